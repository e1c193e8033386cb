"""Faults of the store for tests: an insert that runs none of its table's materialized views; a
store that refuses queries for a while."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def views_detached(client: Any, table: str, reattach: bool = True) -> Iterator[list[str]]:
    """Every view of ``driftline.<table>`` detached inside the block (then attached again): an insert
    there stores its rows and no rollup sees them, with no error, as chDB once did in CI (200
    predictions stored, none in any rollup). Yields the views' names."""
    views = client.query("SELECT dependencies_table FROM system.tables WHERE database = 'driftline' "
                         "AND name = {t:String}", parameters={"t": table}).result_rows[0][0]
    assert views, f"the store has no views on {table}"
    for v in views:
        client.command(f"DETACH TABLE driftline.{v}")
    try:
        yield list(views)
    finally:
        if reattach:
            for v in views:
                client.command(f"ATTACH TABLE driftline.{v}")


class StoreAway:
    """A client whose store refuses the first ``failures`` queries (commands pass through)."""

    def __init__(self, good: Any, failures: int) -> None:
        self.good, self.failures = good, failures

    def query(self, sql: str, **kw: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("store away")
        return self.good.query(sql, **kw)

    def command(self, sql: str, **kw: Any) -> Any:
        return self.good.command(sql, **kw)
