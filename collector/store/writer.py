"""Write validated events to the ClickHouse prediction log in batches.

Each event kind is stored in its own table (``EventKind.table`` of :mod:`driftline.sdk.contract`;
the DDL is ``collector/store/tables.py``). A batch is written with one insert
per table through clickhouse-connect, exactly as against a ClickHouse server.

Exactly-once to every query: the collector commits Kafka offsets only after a batch is stored, so
after a crash the records since the last commit are delivered again, and the SDK may deliver a
record twice when an ack is lost. Before inserting, the writer drops events whose ``event_id`` is
already stored (one indexed lookup per batch, bounded by model and timestamp range, which the
sorting key prunes) and duplicates inside the batch. ReplacingMergeTree is the backstop.

Every insert's summary is checked for rows stored without the table's materialized views (the
rollups), which chDB 26.9 once did silently; such rows are deleted and inserted again
(:meth:`ClickHouseWriter._insert`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from driftline.collector.store.rollup_sql import SENTINEL_VIEWS
from driftline.sdk.codec import dumps
from driftline.sdk.contract import BY_TYPE, LABEL, OUTCOME, PREDICTION, parse_timestamp
from driftline.sdk.contract.schema import NUMBER_TYPES

logger = logging.getLogger("driftline.collector")

# Rows travel as JSONEachRow: encoded by orjson here and parsed by ClickHouse in C++, several times
# faster than building Native columns in Python. Timestamps stay RFC 3339 strings (best_effort).
# optimize_on_insert = 0: ClickHouse would otherwise merge each written block by its table's key
# (the raw tables' and every rollup view's) at insert time, which the views' own GROUP BY already
# did and the in-chunk dedup above makes moot for the raw tables: 46 instead of 52-55 µs of store
# CPU per event at 1,000 models, unchanged at one (bench/bench_store_views.py, bench/fleet.md).
# Every read of a rollup aggregates, and parts are merged in the background as before.
INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 0,
                   "optimize_on_insert": 0}
# Ids are validated UUIDs (schema v1), inlined as literals, ~40 bytes each; chunks hold thousands.
ID_LIST_SETTINGS = {"max_query_size": 64 * 1024 * 1024}
# An insert that ran none of its table's views (the rollups) is taken out and inserted again, at
# most this many times; then the rows stay, stored, and the rollups miss them until rebuilt.
REINSERT_ATTEMPTS = 3

PREDICTION_COLUMNS = (
    "event_id", "timestamp", "model", "model_version", "variant", "request_id",
    "features_num", "features_str", "features_bool", "features_null",
    "prediction", "prediction_num", "prediction_label", "prediction_scores",
    "latency_ms", "status", "error", "tags",
)
LABEL_COLUMNS = (
    "event_id", "timestamp", "model", "model_version", "prediction_id", "label", "label_num", "label_str", "tags",
)
OUTCOME_COLUMNS = ("event_id", "timestamp", "model", "prediction_id", "request_id", "name", "value", "tags")

COLUMNS_OF = {PREDICTION.table: PREDICTION_COLUMNS, LABEL.table: LABEL_COLUMNS, OUTCOME.table: OUTCOME_COLUMNS}


def _json(value: Any) -> str:
    return dumps(value).decode()


def _split_prediction(pred: Any) -> tuple[float | None, str | None, dict[str, float]]:
    """(numeric value, class label, class scores) of a prediction or a label."""
    if isinstance(pred, bool):
        return float(pred), str(pred).lower(), {}
    if isinstance(pred, (int, float)):
        return float(pred), None, {}
    if isinstance(pred, str):
        return None, pred, {}
    if isinstance(pred, dict) and pred:
        scores = {str(k): float(v) for k, v in pred.items()}
        top = max(scores, key=scores.__getitem__)
        return scores[top], top, scores
    if isinstance(pred, list) and len(pred) == 1 and not isinstance(pred[0], (list, dict)):
        return _split_prediction(pred[0])
    return None, None, {}


_NO_STR: dict[str, str] = {}
_NO_BOOL: dict[str, bool] = {}
_NO_NULL: list[str] = []


def _split_features(features: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, bool], list[str]]:
    """(numbers, strings, bools, names of nulls): the four typed columns of the feature map."""
    if NUMBER_TYPES.issuperset(map(type, features.values())):  # the usual case, at C speed
        return features, _NO_STR, _NO_BOOL, _NO_NULL  # the map goes out as it came in, nothing copied
    num: dict[str, float] = {}
    text: dict[str, str] = {}
    flags: dict[str, bool] = {}
    nulls: list[str] = []
    for name, value in features.items():
        kind = type(value)
        if kind is float or kind is int:
            num[name] = value
        elif kind is str:
            text[name] = value
        elif kind is bool:
            flags[name] = value
        else:
            nulls.append(name)
    return num, text, flags, nulls


def prediction_row(e: dict[str, Any]) -> dict[str, Any]:
    num, text, flags, nulls = _split_features(e.get("features") or {})
    pred = e.get("prediction")
    p_num, p_label, p_scores = _split_prediction(pred)
    return {
        "event_id": e["event_id"], "timestamp": e["timestamp"], "model": e["model"],
        "model_version": e.get("model_version") or "", "variant": e.get("variant") or "primary",
        "request_id": e.get("request_id") or e["event_id"],
        "features_num": num, "features_str": text, "features_bool": flags, "features_null": nulls,
        "prediction": _json(pred), "prediction_num": p_num, "prediction_label": p_label,
        "prediction_scores": p_scores, "latency_ms": e.get("latency_ms"), "status": e.get("status") or "ok",
        "error": e.get("error") or "", "tags": e.get("tags") or {},
    }


def label_row(e: dict[str, Any]) -> dict[str, Any]:
    label = e["label"]
    l_num, l_str, _ = _split_prediction(label)
    return {
        "event_id": e["event_id"], "timestamp": e["timestamp"], "model": e["model"],
        "model_version": e.get("model_version") or "", "prediction_id": e["prediction_id"],
        "label": _json(label), "label_num": l_num, "label_str": l_str, "tags": e.get("tags") or {},
    }


def outcome_row(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": e["event_id"], "timestamp": e["timestamp"], "model": e["model"],
        "prediction_id": e.get("prediction_id"), "request_id": e.get("request_id") or "", "name": e["name"],
        "value": float(e["value"]), "tags": e.get("tags") or {},
    }


ROW_OF = {PREDICTION.table: prediction_row, LABEL.table: label_row, OUTCOME.table: outcome_row}


@dataclass(frozen=True)
class WriteResult:
    stored: dict[str, int]
    duplicates: int
    skipped: frozenset[str] = frozenset()  # ids not written because already stored (replays)
    reinserted: int = 0  # rows inserted again because their first insert ran none of the views


@dataclass(frozen=True)
class TableRows:
    """One table's share of a chunk: unique events by id and their JSONEachRow lines."""

    ids: list[str]
    lines: list[bytes]
    models: list[str]
    first_ts: str  # RFC 3339 bounds of the chunk, for the replay lookup
    last_ts: str


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk encoded for storage (:meth:`ClickHouseWriter.prepare`), ready to :meth:`store`."""

    tables: dict[str, TableRows]
    in_batch_dups: int


class ClickHouseWriter:
    """Insert events into ``driftline.predictions`` / ``labels`` / ``outcomes``.

    Two steps, so a caller can encode one chunk while the previous one is being stored:
    :meth:`prepare` (CPU only: in-chunk duplicates, rows encoded as JSON lines) and :meth:`store`
    (I/O only: the replay lookup and one insert per table). ``write`` does both. ``store`` raises
    on a storage failure (the caller retries and must not commit offsets).
    """

    def __init__(self, client: Any, database: str = "driftline", *, dedup: bool = True) -> None:
        self.client = client
        self.database = database
        self.dedup = dedup
        self._failed: dict[str, set[str]] = {}  # per table, the ids of an insert that raised

    def write(self, events: Iterable[dict[str, Any]]) -> WriteResult:
        return self.store(self.prepare(events))

    def prepare(self, events: Iterable[dict[str, Any]]) -> PreparedChunk:
        by_table: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in COLUMNS_OF}
        in_batch_dups = 0
        for e in events:
            bucket = by_table[BY_TYPE[e["type"]].table]
            if e["event_id"] in bucket:
                in_batch_dups += 1
                continue
            bucket[e["event_id"]] = e
        tables: dict[str, TableRows] = {}
        for table, bucket in by_table.items():
            if not bucket:
                continue
            make_row = ROW_OF[table]
            evs = bucket.values()
            lo, hi = _bounds([e["timestamp"] for e in evs])
            tables[table] = TableRows(list(bucket), [dumps(make_row(e)) for e in evs],
                                      sorted({e["model"] for e in evs}), lo, hi)
        return PreparedChunk(tables, in_batch_dups)

    def store(self, chunk: PreparedChunk) -> WriteResult:
        stored: dict[str, int] = {}
        replays = reinserted = 0
        skipped: set[str] = set()
        for table, rows in chunk.tables.items():
            lines, ids = rows.lines, rows.ids
            failed = self._failed.pop(table, set())
            if self.dedup:
                existing = self._existing_ids(table, rows)
                landed = existing & failed
                if landed:
                    logger.warning("%d rows of a failed insert into %s were stored anyway (ClickHouse keeps an "
                                   "insert's rows when one of its materialized views fails after them): they are not "
                                   "inserted twice, and the rollups may miss them; the collector's audit counts what "
                                   "they miss (driftline_rollup_rows_missing)", len(landed), table)
                if existing:
                    replays += len(existing)
                    skipped |= existing
                    kept = [(i, line) for i, line in zip(rows.ids, rows.lines) if i not in existing]
                    ids, lines = [k[0] for k in kept], [k[1] for k in kept]
            if not lines:
                continue
            try:
                reinserted += self._insert(table, rows.models, ids, b"\n".join(lines), len(lines))
            except Exception:
                self._failed[table] = set(ids)
                raise
            stored[table] = len(lines)
        return WriteResult(stored=stored, duplicates=chunk.in_batch_dups + replays, skipped=frozenset(skipped),
                           reinserted=reinserted)

    def _insert(self, table: str, models: list[str], ids: list[str], block: bytes, n: int) -> int:
        """Insert one table's ``n`` rows; returns how many rows had to be inserted again.

        ClickHouse feeds the rollups (materialized views) from each insert. chDB 26.9 was seen to
        store an insert's rows and run none of the views, with no error (a CI run: 200 predictions
        in the raw table, none in any rollup). Such an insert's summary counts only the table's
        own rows, where a view that writes for every insert (``SENTINEL_VIEWS``) adds at least one:
        the rows are then deleted and inserted again, so the views see them. A real server's
        summary counts the views' rows too; an asynchronous insert's counts none, never a match.
        """
        for attempt in range(REINSERT_ATTEMPTS + 1):
            summary = self.client.raw_insert(f"{self.database}.{table}", column_names=list(COLUMNS_OF[table]),
                                             insert_block=block, settings=INSERT_SETTINGS, fmt="JSONEachRow")
            if getattr(summary, "written_rows", None) != n or not self._has_sentinel(table):
                return attempt * n
            if attempt == REINSERT_ATTEMPTS:
                break
            logger.warning("%d rows stored in %s without its materialized views (rollups); inserting them again",
                           n, table)
            # Lightweight DELETE: the rows are masked at once; the next insert is visible beside them.
            self.client.command(f"DELETE FROM {self.database}.{table} WHERE model IN ({_quoted(models)}) "
                                f"AND event_id IN ({_quoted(ids)})", settings=ID_LIST_SETTINGS)
        logger.error("%d rows stored in %s, %d times without its materialized views: they stay stored; the "
                     "dashboard's rollups miss them until `driftline rollups rebuild`", n, table,
                     REINSERT_ATTEMPTS + 1)
        return REINSERT_ATTEMPTS * n

    def _has_sentinel(self, table: str) -> bool:
        """True if ``table`` has its sentinel view now (asked only after a suspicious insert: the
        rollups may have been dropped on purpose, and then an insert writes only its own rows)."""
        view = SENTINEL_VIEWS.get(table)
        if view is None:
            return False
        rows = self.client.query("SELECT dependencies_table FROM system.tables WHERE database = {db:String} "
                                 "AND name = {t:String}", parameters={"db": self.database, "t": table}).result_rows
        return bool(rows) and view in rows[0][0]

    def _existing_ids(self, table: str, rows: TableRows) -> set[str]:
        """Ids of the chunk already stored (replays), by one lookup the sorting key prunes.

        First the ids stored in the chunk's time range, intersected here: about 8x cheaper than
        sending thousands of ids for ClickHouse to parse, and the range normally holds little
        more than the chunk itself. A range crowded with other rows (a late, long-buffered chunk)
        hits the limit and falls back to the lookup by id.
        """
        lo, hi = parse_timestamp(rows.first_ts), parse_timestamp(rows.last_ts)
        where = (f"FROM {self.database}.{table} WHERE model IN ({_quoted(rows.models)}) "
                 f"AND timestamp BETWEEN toDateTime64('{lo:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC') "
                 f"AND toDateTime64('{hi:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')")
        limit = 4 * len(rows.ids) + 1000
        in_range = self.client.query(f"SELECT toString(event_id) {where} LIMIT {limit}").result_rows
        if len(in_range) < limit:
            return _matching(rows.ids, in_range)
        # Ids inlined as literals: binding thousands of parameters costs more in clickhouse-connect's
        # Python escaping than the query itself.
        result = self.client.query(f"SELECT toString(event_id) {where} AND event_id IN ({_quoted(rows.ids)})",
                                   settings=ID_LIST_SETTINGS)
        return _matching(rows.ids, result.result_rows)


def _quoted(values: list[str]) -> str:
    """A ClickHouse list of string literals (model names and validated ids)."""
    return "'" + "','".join(v.replace("\\", "\\\\").replace("'", "\\'") for v in values) + "'"


def _matching(ids: list[str], stored_rows: Sequence[Sequence[str]]) -> set[str]:
    """The ``ids`` (as sent: UUIDs may come in upper case) that ClickHouse returned (lower case)."""
    stored = {row[0] for row in stored_rows}
    return {i for i in ids if i.lower() in stored} if stored else set()


def _bounds(stamps: list[str]) -> tuple[str, str]:
    """Earliest and latest of RFC 3339 timestamps. Same-width UTC ("...Z") stamps, as the SDK and
    sidecar write them, order as strings; anything else is parsed."""
    width = len(stamps[0])
    if all(len(s) == width and s[-1] == "Z" for s in stamps):
        return min(stamps), max(stamps)
    parsed = sorted(stamps, key=parse_timestamp)
    return parsed[0], parsed[-1]
