"""``driftline rollups``: check the dashboard's rollups against the raw prediction log, or rebuild them.

    driftline rollups check              # exit 1 if a rollup's count differs from the raw rows'
    driftline rollups check --json
    driftline rollups rebuild --yes      # recompute every rollup from the raw tables

The rollups (``rollups.py``) are filled by materialized views as rows are inserted. The raw tables
are the record; ``check`` counts, per model and hour, the rows of ``predictions``, ``labels`` and
``outcomes`` and what the rollups that count every row hold for them (``rollup_predictions_1m``,
``rollup_predictions_1h``; ``rollup_arrivals_1h`` per hour only). A rollup that counts fewer
missed an insert; one that counts more holds rows deleted since (deletions reach the aggregates
only by ``rebuild``).
Rows that arrive while the check runs can differ for a moment, so a difference is read twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Collection

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url, store_errors
from driftline.collector.store.rollup_sql import HOUR
from driftline.collector.store.tables import DATABASE as DB
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION
from driftline.sdk.errors import StoreError


def _per_hour(rollup: str, by_model: bool, where: str = "1") -> str:
    """A rollup's count per model and hour (by ``minute``, which may hold the hour), or per
    ``hour`` with the model given as ``'*'``."""
    if by_model:
        cols = "model, toDateTime(toStartOfHour(minute), 'UTC') AS hour"
    else:
        cols = "'*' AS model, hour"
    return f"SELECT {cols}, sum(n) AS n FROM {DB}.{rollup} WHERE {where} GROUP BY model, hour"


#: (raw table, rollup, the rollup's count per hour, by model): a rollup not by model is compared
#: per hour, its model given as '*'
COUNTED: tuple[tuple[str, str, str, bool], ...] = (
    *((PREDICTION.table, rollup, _per_hour(rollup, True), True)
      for rollup in ("rollup_predictions_1m", "rollup_predictions_1h")),
    *((kind.table, "rollup_arrivals_1h", _per_hour("rollup_arrivals_1h", False, f"kind = '{kind.table}'"), False)
      for kind in (LABEL, OUTCOME)),
)


def missing(client: Any) -> list[str]:
    """The rollups of :data:`COUNTED` the store does not have (an older release's store before a
    collector started: every writer creates and backfills them at start, as ``rebuild`` does)."""
    have = {r[0] for r in client.query(f"SELECT name FROM system.tables WHERE database = '{DB}'").result_rows}
    return sorted({c[1] for c in COUNTED} - have)


def differences(client: Any, absent: Collection[str] = ()) -> list[dict[str, Any]]:
    """Per (raw table, rollup, model, hour) where the counts differ: ``raw`` and ``rollup`` rows.
    The rollups in ``absent`` (:func:`missing`) are left out."""
    out = []
    for table, rollup, rolled, by_model in COUNTED:
        if rollup in absent:
            continue
        sql = (f"SELECT model, hour, r.n AS raw, u.n AS rolled FROM "
               f"(SELECT {'model' if by_model else repr('*')} AS model, {HOUR} AS hour, count() AS n "
               f"FROM {DB}.{table} GROUP BY model, hour) AS r FULL OUTER JOIN ({rolled}) AS u USING (model, hour) "
               f"WHERE raw != rolled ORDER BY model, hour SETTINGS join_use_nulls = 0")
        for model, hour, raw, rolled_n in client.query(sql).result_rows:
            out.append({"table": table, "rollup": rollup, "model": model, "hour": hour.isoformat(),
                        "raw": int(raw), "rollup_rows": int(rolled_n)})
    return out


def check(client: Any, recheck_s: float = 2.0, absent: Collection[str] = ()) -> list[dict[str, Any]]:
    """The differences seen twice, ``recheck_s`` apart (rows stored in between settle)."""
    first = differences(client, absent)
    if not first:
        return []
    time.sleep(max(0.0, recheck_s))
    key = ("table", "rollup", "model", "hour", "raw", "rollup_rows")
    seen = {tuple(d[k] for k in key) for d in first}
    return [d for d in differences(client, absent) if tuple(d[k] for k in key) in seen]


def _check(args: argparse.Namespace, client: Any) -> int:
    absent = missing(client)
    found = check(client, args.recheck_s, absent)
    if args.json:
        print(json.dumps({"consistent": not found and not absent, "missing": absent, "differences": found}))
        return 1 if found or absent else 0
    for rollup in absent:
        print(f"{rollup} is missing: `driftline rollups rebuild --yes` creates and fills it (or start a collector)")
    if not found and not absent:
        print("rollups consistent with the raw tables: "
              + ", ".join(sorted({f"{c[0]} → {c[1]}" for c in COUNTED})))
        return 0
    for d in found:
        what = "misses" if d["rollup_rows"] < d["raw"] else "holds more than"
        who = "every model" if d["model"] == "*" else f"model {d['model']!r}"
        print(f"{d['rollup']} {what} {d['table']}: {who}, hour {d['hour']}: "
              f"{d['rollup_rows']} against {d['raw']} raw rows")
    if found:
        print(f"{len(found)} difference{'s' if len(found) != 1 else ''}; `driftline rollups rebuild --yes` "
              "recomputes the rollups from the raw tables (stop the collectors first)")
    return 1


def _rebuild(args: argparse.Namespace, client: Any) -> int:
    from driftline.collector.store import rollups

    if not args.yes:
        print("rebuild truncates every rollup and refills it from the raw tables; rows inserted meanwhile "
              "may be counted twice, so stop the collectors first, then run with --yes", file=sys.stderr)
        return 2
    started = time.monotonic()
    rollups.rebuild(client)
    print(f"rollups rebuilt from the raw tables in {time.monotonic() - started:.1f} s")
    return 0


def _handler(args: argparse.Namespace) -> int:
    url = resolve_url(args.clickhouse_url, os.environ)
    try:
        with store_errors(url):
            return {"check": _check, "rebuild": _rebuild}[args.action](args, connect(url))
    except StoreError as exc:  # 2, not 1: exit 1 of `check` means the rollups differ
        print(f"driftline: {exc}", file=sys.stderr)
        return 2


def register(sub: Any) -> None:
    """Add the ``rollups`` command to the ``driftline`` parser."""
    p = sub.add_parser("rollups", help="check the dashboard's rollups against the raw tables, or rebuild them")
    p.add_argument("action", choices=("check", "rebuild"),
                   help="check: counts per model and hour, exit 1 on a difference; rebuild: recompute all")
    p.add_argument("--yes", action="store_true", help="rebuild: the collectors are stopped, go ahead")
    p.add_argument("--json", action="store_true", help="check: print the differences as JSON")
    p.add_argument("--recheck-s", type=float, default=2.0, metavar="SECONDS",
                   help="check: read a difference again after this long before reporting it (default 2)")
    p.add_argument("--clickhouse-url", help=f"default: DRIFTLINE_CLICKHOUSE_URL or {DEFAULT_URL}")
    p.set_defaults(handler=_handler)
