"""Detector output and state in ClickHouse (clickhouse-connect client, real or embedded store).

* :func:`write_rows` appends :class:`~driftline.detectors.base.MetricRow` s to
  ``driftline.drift_metrics``;
* :func:`save_state` / :func:`load_state` keep the engine's state blob in
  ``driftline.detector_state`` (one live row per model and key: ReplacingMergeTree on
  ``saved_at``), so detectors survive a collector restart;
* :func:`migrate` creates these tables and ``driftline.references``.

Typical collector loop::

    rows = engine.poll()
    if rows:
        write_rows(client, rows)
    if time_to_checkpoint:
        save_state(client, engine.state())
    ...
    engine = DetectorEngine.restore(config, load_state(client)) if load_state(client) else ...
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any, Iterable

from driftline.detectors.base import MetricRow
from driftline.detectors.reference import REFERENCES_DDL

__all__ = ["DETECTOR_STATE_DDL", "migrate", "write_rows", "save_state", "load_state"]

DETECTOR_STATE_DDL = """
CREATE TABLE IF NOT EXISTS driftline.detector_state
(
    model     LowCardinality(String) COMMENT '* for the whole engine',
    key       String,
    blob      String COMMENT 'base64 of the zlib-compressed JSON state',
    saved_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(saved_at)
ORDER BY (model, key)
"""


def migrate(client: Any) -> None:
    """Create ``drift_metrics`` (same DDL as the collector's), ``references`` and ``detector_state``."""
    from driftline.collector.tables import DATABASE, DRIFT_METRICS

    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    client.command(DRIFT_METRICS)
    client.command(REFERENCES_DDL)
    client.command(DETECTOR_STATE_DDL)


def write_rows(client: Any, rows: Iterable[MetricRow]) -> int:
    """Insert rows into ``driftline.drift_metrics``; returns how many."""
    data = [r.as_tuple() for r in rows]
    if data:
        client.insert("driftline.drift_metrics", data, column_names=list(MetricRow.COLUMNS))
    return len(data)


def save_state(client: Any, blob: bytes, *, model: str = "*", key: str = "engine",
               now: _dt.datetime | None = None) -> None:
    """Store the latest state blob (older ones collapse on merge and are ignored by reads)."""
    saved = now or _dt.datetime.now(_dt.timezone.utc)
    client.insert("driftline.detector_state", [[model, key, base64.b64encode(blob).decode(), saved]],
                  column_names=["model", "key", "blob", "saved_at"])


def load_state(client: Any, *, model: str = "*", key: str = "engine") -> bytes | None:
    """The newest saved blob, or ``None`` if there is none."""
    rows = client.query(
        "SELECT argMax(blob, saved_at) FROM driftline.detector_state "
        "WHERE model = {m:String} AND key = {k:String} HAVING count() > 0",
        parameters={"m": model, "k": key}).result_rows
    return base64.b64decode(rows[0][0]) if rows else None
