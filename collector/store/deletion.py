"""Deletion on request (GDPR art. 17): remove a person's rows from the prediction log, with audit.

:func:`delete_rows` takes either prediction ids or a ClickHouse predicate on
``driftline.predictions`` (e.g. ``tags['user_id'] = 'u-42'``) and removes

* ``predictions``: the matching rows;
* ``labels``: labels of those predictions (by ``prediction_id``), and, for a predicate, labels
  the predicate matches itself when it is valid on that table (labels carry ``tags`` too);
* ``outcomes``: outcomes of those predictions (by ``prediction_id`` or their ``request_id``),
  and outcomes the predicate matches itself.

How it works, and why:

1. The predicate is evaluated once to collect the ``event_id`` of every row to delete. The
   deletes then name rows by UUID only: ClickHouse keeps the text of each mutation in the table
   directory (``mutation_N.txt``) and in ``system.mutations``, and a predicate such as
   ``tags['email'] = 'ann@example.org'`` would otherwise be written to disk again by the very
   command that is meant to erase it.
2. ``mode="mutation"`` (default) runs ``ALTER TABLE … DELETE … SETTINGS mutations_sync = 2``:
   when the call returns, every active data part has been rewritten without the rows.
   ``mode="lightweight"`` runs ``DELETE FROM …`` (rows are masked at once and physically removed
   by later merges; cheaper on big tables).
3. ``optimize=True`` then runs ``OPTIMIZE TABLE … FINAL`` to rewrite the parts (needed after a
   lightweight delete to purge the masked rows from disk right away).
4. The feature rollup's hours that held the predictions' values are rolled again from what is left
   (``feature_rolls.py``; with ``optimize=True`` it is optimized too: its bins keep min and max).
5. One audit row per table goes to ``driftline.deletions``. String literals of the predicate are
   recorded as ``hmac:…`` (with the PII hash key) or ``'<redacted>'`` so the audit trail does not
   itself keep the personal data.

When are the bytes gone from disk? Rewritten parts replace the old ones at once, but the old,
now inactive parts stay on disk for ``old_parts_lifetime`` (MergeTree setting, 480 s by
default) before ClickHouse removes them. So: after a mutation-mode delete, within ~8 minutes;
after a lightweight delete, at the next merge of the part (unbounded) unless ``OPTIMIZE … FINAL``
is run, then ~8 minutes. Kafka keeps the raw, unscrubbed events until topic retention expires
(the embedded broker keeps them in memory until it restarts). Backups are out of scope.

Example
-------
>>> report = delete_rows(client, where="tags['user_id'] = 'u-42'", requested_by="dpo")  # doctest: +SKIP
>>> report.counts                                                                       # doctest: +SKIP
{'predictions': 3, 'labels': 1, 'outcomes': 2}
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from driftline.collector.store.tables import DATABASE
from driftline.sdk.contract import EVENT_KINDS, LABEL, OUTCOME, PREDICTION
from driftline.sdk.contract.schema import UUID_PATTERN
from driftline.sdk.errors import ConfigError, DeletionError
from driftline.sdk.ids import uuid7

__all__ = ["DeletionError", "DeletionReport", "delete_rows", "redact_predicate"]

_UUID_RE = re.compile(UUID_PATTERN)
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'")
_CHUNK = 5_000  # ids per statement: keeps each query well under ClickHouse's max_query_size
TABLES = tuple(k.table for k in EVENT_KINDS)


@dataclass(frozen=True)
class DeletionReport:
    """What a deletion did. ``counts`` maps table name to rows deleted (or matched, dry run)."""

    deletion_id: str
    predicate: str
    counts: Mapping[str, int] = field(default_factory=dict)
    dry_run: bool = False
    optimized: bool = False
    predicate_skipped: tuple[str, ...] = ()  # tables where the predicate did not apply


def _q(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def redact_predicate(where: str, hash_key: bytes | None = None) -> str:
    """Replace each string literal of ``where`` by its HMAC (with a key) or ``'<redacted>'``."""
    from driftline.collector.store.hashing import hash_value

    def sub(m: re.Match[str]) -> str:
        if hash_key is None:
            return "'<redacted>'"
        raw = m.group()[1:-1].replace("''", "'")
        raw = re.sub(r"\\(.)", r"\1", raw)
        return _q(hash_value(hash_key, raw))

    return _STRING_LITERAL.sub(sub, where)


def _in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_q(v) for v in values)})"


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


class _Db:
    def __init__(self, client: Any) -> None:
        self.client = client

    def rows(self, sql: str, step: str) -> list[tuple[Any, ...]]:
        try:
            return list(self.client.query(sql).result_rows)
        except Exception as exc:
            raise DeletionError(f"{step}: {_first_line(exc)}") from None

    def command(self, sql: str, step: str) -> None:
        try:
            self.client.command(sql)
        except Exception as exc:
            raise DeletionError(f"{step}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _ids(db: _Db, table: str, condition: str, step: str) -> list[str]:
    sql = f"SELECT DISTINCT toString(event_id) FROM {DATABASE}.{table} WHERE {condition}"
    return [r[0] for r in db.rows(sql, step)]


def _ids_by(db: _Db, table: str, column: str, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(values):
        found.update(_ids(db, table, _in_list(column, chunk), f"find {table}"))
    return found


def _count(db: _Db, table: str, ids: Sequence[str]) -> int:
    total = 0
    for chunk in _chunks(ids):
        rows = db.rows(f"SELECT count() FROM {DATABASE}.{table} WHERE {_in_list('event_id', chunk)}",
                       f"count {table}")
        total += int(rows[0][0])
    return total


_INDEXES_OF = {
    PREDICTION.table: ("rollup_prediction_index", "rollup_pair_index"),
    OUTCOME.table: ("rollup_outcome_index",),
}


def delete_rows(
    client: Any,
    *,
    prediction_ids: Sequence[str] = (),
    where: str | None = None,
    requested_by: str = "",
    mode: str = "mutation",
    optimize: bool = False,
    dry_run: bool = False,
    hash_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> DeletionReport:
    """Delete the rows of the given predictions (or of a predicate) from every table; audit it.

    ``client`` is a clickhouse-connect client (read-write). Raises :class:`ConfigError` for bad
    arguments and :class:`DeletionError` if ClickHouse refuses a step; rows already deleted stay
    deleted and the audit is written only after every delete succeeded.
    """
    if bool(prediction_ids) == (where is not None):
        raise ConfigError("delete: give either --prediction-id or --where, not both and not neither")
    if mode not in ("mutation", "lightweight"):
        raise ConfigError(f"delete: mode must be 'mutation' or 'lightweight', got {mode!r}")
    bad = [p for p in prediction_ids if not _UUID_RE.match(p)]
    if bad:
        raise ConfigError(f"--prediction-id: not a UUID: {bad[0]!r}")
    if where is not None and not where.strip():
        raise ConfigError("--where: empty predicate")
    db = _Db(client)

    # 1. The rows, by event_id, of each table.
    targets: dict[str, set[str]] = {t: set() for t in TABLES}
    skipped: list[str] = []
    if where is not None:
        cond = f"({where})"
        rows = db.rows(f"SELECT DISTINCT toString(event_id), request_id FROM {DATABASE}.{PREDICTION.table} "
                       f"WHERE {cond}", "evaluate --where on predictions")
        pred_ids = sorted({r[0] for r in rows})
        for table in (LABEL.table, OUTCOME.table):
            try:
                targets[table].update(_ids(db, table, cond, f"evaluate --where on {table}"))
            except DeletionError:
                skipped.append(table)  # e.g. a predicate on features_str: predictions only
        predicate = redact_predicate(where, hash_key)
    else:
        pred_ids = sorted({p.lower() for p in prediction_ids})
        rows = []
        for chunk in _chunks(pred_ids):
            rows += db.rows(f"SELECT DISTINCT toString(event_id), request_id FROM {DATABASE}.{PREDICTION.table} "
                            f"WHERE {_in_list('event_id', chunk)}", "find predictions")
        predicate = _in_list("prediction_id", pred_ids) if len(pred_ids) <= 20 else \
            f"prediction_id IN ({len(pred_ids)} ids)"
    request_ids = sorted({r[1] for r in rows if r[1]})
    targets[PREDICTION.table].update(r[0] for r in rows)
    if pred_ids:
        targets[LABEL.table] |= _ids_by(db, LABEL.table, "prediction_id", pred_ids)
        targets[OUTCOME.table] |= _ids_by(db, OUTCOME.table, "prediction_id", pred_ids)
    if request_ids:
        targets[OUTCOME.table] |= _ids_by(db, OUTCOME.table, "request_id", request_ids)

    # 2. Count, delete, verify.
    counts = {t: _count(db, t, sorted(ids)) for t, ids in targets.items()}
    deletion_id = uuid7()
    if dry_run:
        return DeletionReport(deletion_id, predicate, counts, dry_run=True, predicate_skipped=tuple(skipped))
    # The hours of the feature rollup that hold the predictions' values: rolled again after.
    hours = [r[0] for chunk in _chunks(sorted(targets[PREDICTION.table])) for r in db.rows(
        f"SELECT DISTINCT toUInt32(toStartOfHour(timestamp)) FROM {DATABASE}.{PREDICTION.table} "
        f"WHERE {_in_list('event_id', chunk)}", "find the predictions' hours")]
    for table, ids in targets.items():
        for chunk in _chunks(sorted(ids)):
            cond = _in_list("event_id", chunk)
            if mode == "mutation":
                sql = f"ALTER TABLE {DATABASE}.{table} DELETE WHERE {cond} SETTINGS mutations_sync = 2"
            else:
                sql = (f"DELETE FROM {DATABASE}.{table} WHERE {cond} "
                       "SETTINGS lightweight_deletes_sync = 2, mutations_sync = 2")
            db.command(sql, f"delete from {table}")
        for index in _INDEXES_OF.get(table, ()) if ids else ():
            # The dashboard's per-event rollup indexes (collector/store/rollups.py) hold the same ids.
            if not db.rows(f"EXISTS TABLE {DATABASE}.{index}", f"check {index}")[0][0]:
                continue
            for chunk in _chunks(sorted(ids)):
                db.command(f"ALTER TABLE {DATABASE}.{index} DELETE WHERE {_in_list('event_id', chunk)} "
                           "SETTINGS mutations_sync = 2", f"delete from {index}")
        if ids and optimize:
            db.command(f"OPTIMIZE TABLE {DATABASE}.{table} FINAL", f"optimize {table}")
        left = _count(db, table, sorted(ids))
        if left:
            raise DeletionError(f"delete from {table}: {left} rows still visible after the delete")

    if hours:  # the feature rollup's rolls of those hours hold the values (and bins' min and max): rolled again
        from driftline.collector.store.feature_rolls import closed_before, roll_pending

        try:  # closed hours only: an open one is read raw until the collector rolls it
            roll_pending(client, min(hours), min(max(hours) + 3600, closed_before(clock(), 0.0)), clock=clock)
        except Exception as exc:
            raise DeletionError(f"roll the feature rollup's hours again: {_first_line(exc)}") from None
        if optimize:
            db.command(f"OPTIMIZE TABLE {DATABASE}.rollup_features_1h FINAL", "optimize rollup_features_1h")

    # 3. Audit, one row per table, after every delete succeeded.
    at = datetime.fromtimestamp(clock(), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    values = ", ".join(
        f"({_q(deletion_id)}, {_q(at)}, {_q(requested_by)}, {_q(predicate)}, {_q(t)}, {counts[t]})"
        for t in TABLES
    )
    db.command(f"INSERT INTO {DATABASE}.deletions (deletion_id, requested_at, requested_by, predicate, "
               f"table_name, rows_deleted) VALUES {values}", "write audit record")
    return DeletionReport(deletion_id, predicate, counts, optimized=optimize, predicate_skipped=tuple(skipped))
