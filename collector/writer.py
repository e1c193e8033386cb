"""Write validated events to the ClickHouse prediction log in batches.

Each event type maps to one table (``collector/tables.py``). A batch is written with one insert
per table through clickhouse-connect, exactly as against a ClickHouse server.

Exactly-once to every query: the collector commits Kafka offsets only after a batch is stored, so
after a crash the records since the last commit are delivered again, and the SDK may deliver a
record twice when an ack is lost. Before inserting, the writer drops events whose ``event_id`` is
already stored (one indexed lookup per batch, bounded by model and timestamp range, which the
sorting key prunes) and duplicates inside the batch. ReplacingMergeTree is the backstop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

logger = logging.getLogger("driftline.collector")

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

TABLE_OF = {"prediction": "predictions", "label": "labels", "outcome": "outcomes"}
COLUMNS_OF = {"predictions": PREDICTION_COLUMNS, "labels": LABEL_COLUMNS, "outcomes": OUTCOME_COLUMNS}


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(timezone.utc)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


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


def prediction_row(e: dict[str, Any]) -> tuple[Any, ...]:
    num: dict[str, float] = {}
    text: dict[str, str] = {}
    flags: dict[str, bool] = {}
    nulls: list[str] = []
    for name, value in (e.get("features") or {}).items():
        if value is None:
            nulls.append(name)
        elif isinstance(value, bool):
            flags[name] = value
        elif isinstance(value, str):
            text[name] = value
        else:
            num[name] = float(value)
    pred = e.get("prediction")
    p_num, p_label, p_scores = _split_prediction(pred)
    return (
        e["event_id"], parse_ts(e["timestamp"]), e["model"], e.get("model_version") or "",
        e.get("variant") or "primary", e.get("request_id") or e["event_id"],
        num, text, flags, nulls,
        _json(pred), p_num, p_label, p_scores,
        e.get("latency_ms"), e.get("status") or "ok", e.get("error") or "", e.get("tags") or {},
    )


def label_row(e: dict[str, Any]) -> tuple[Any, ...]:
    label = e["label"]
    l_num, l_str, _ = _split_prediction(label)
    return (
        e["event_id"], parse_ts(e["timestamp"]), e["model"], e.get("model_version") or "",
        e["prediction_id"], _json(label), l_num, l_str, e.get("tags") or {},
    )


def outcome_row(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        e["event_id"], parse_ts(e["timestamp"]), e["model"], e.get("prediction_id"),
        e.get("request_id") or "", e["name"], float(e["value"]), e.get("tags") or {},
    )


ROW_OF = {"predictions": prediction_row, "labels": label_row, "outcomes": outcome_row}


@dataclass(frozen=True)
class WriteResult:
    stored: dict[str, int]
    duplicates: int


class ClickHouseWriter:
    """Insert events into ``driftline.predictions`` / ``labels`` / ``outcomes``.

    ``write`` raises on a storage failure (the caller retries and must not commit offsets).
    """

    def __init__(self, client: Any, database: str = "driftline", *, dedup: bool = True) -> None:
        self.client = client
        self.database = database
        self.dedup = dedup

    def write(self, events: Iterable[dict[str, Any]]) -> WriteResult:
        by_table: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in COLUMNS_OF}
        in_batch_dups = 0
        for e in events:
            bucket = by_table[TABLE_OF[e["type"]]]
            if e["event_id"] in bucket:
                in_batch_dups += 1
                continue
            bucket[e["event_id"]] = e
        stored: dict[str, int] = {}
        replays = 0
        for table, bucket in by_table.items():
            if not bucket:
                continue
            if self.dedup:
                existing = self._existing_ids(table, bucket.values())
                replays += len(existing)
                for event_id in existing:
                    bucket.pop(event_id, None)
            if not bucket:
                continue
            rows = [ROW_OF[table](e) for e in bucket.values()]
            self.client.insert(f"{self.database}.{table}", rows, column_names=list(COLUMNS_OF[table]))
            stored[table] = len(rows)
        return WriteResult(stored=stored, duplicates=in_batch_dups + replays)

    def _existing_ids(self, table: str, events: Iterable[dict[str, Any]]) -> set[str]:
        events = list(events)
        models = sorted({e["model"] for e in events})
        stamps = [e["timestamp"] for e in events]
        lo = min(parse_ts(s) for s in stamps)
        hi = max(parse_ts(s) for s in stamps)
        # Client-side binding (%(name)s) works the same on every ClickHouse HTTP endpoint.
        result = self.client.query(
            f"SELECT toString(event_id) FROM {self.database}.{table} "
            "WHERE model IN %(models)s "
            "AND timestamp BETWEEN toDateTime64(%(lo)s, 6, 'UTC') AND toDateTime64(%(hi)s, 6, 'UTC') "
            "AND event_id IN %(ids)s",
            parameters={"models": models, "lo": lo.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        "hi": hi.strftime("%Y-%m-%d %H:%M:%S.%f"), "ids": [e["event_id"] for e in events]},
        )
        return {row[0] for row in result.result_rows}


def rows_for(events: Sequence[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table for ``events`` (used by tests and the benchmark)."""
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS_OF}
    for e in events:
        table = TABLE_OF[e["type"]]
        out[table].append(ROW_OF[table](e))
    return out
