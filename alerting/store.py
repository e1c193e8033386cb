"""Alert history in ClickHouse: ``driftline.alerts``, one row per incident event.

Rows are written through the outbox (kind ``history``), so a restart neither loses nor doubles
them: the row's ``event_id`` is the outbox idempotency key and ReplacingMergeTree collapses a
re-sent row; readers use ``FINAL``. The table's DDL is in ``collector/store/tables.py``, created by
:func:`driftline.collector.store.migrate`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from driftline.alerting.incidents import Alert, feature_records, window_records

COLUMNS = ("event_id", "event_time", "event", "incident", "rule", "kind", "severity", "model",
           "model_version", "segment", "statistic", "condition", "since", "value", "samples",
           "features", "windows", "evidence_sql", "dashboard_link", "channels")


def history_row(alert: Alert, event_id: str, channels: tuple[str, ...]) -> dict[str, Any]:
    """The JSON-safe outbox body of one history row."""
    import json

    return {"event_id": event_id, "event_time": alert.at.isoformat(), "event": alert.event,
            "incident": alert.dedup_key, "rule": alert.rule, "kind": alert.kind,
            "severity": alert.severity, "model": alert.model,
            "model_version": alert.model_version, "segment": alert.segment,
            "statistic": alert.statistic, "condition": alert.condition,
            "since": alert.since.isoformat(), "value": alert.value, "samples": alert.samples,
            "features": json.dumps(feature_records(alert)),
            "windows": json.dumps(window_records(alert)),
            "evidence_sql": alert.sql, "dashboard_link": alert.dashboard_link,
            "channels": list(channels)}


def insert(client: Any, row: dict[str, Any]) -> None:
    """Insert one history row (from :func:`history_row`)."""
    values = dict(row)
    for k in ("event_time", "since"):
        values[k] = dt.datetime.fromisoformat(values[k])
    client.insert("driftline.alerts", [[values[c] for c in COLUMNS]], column_names=list(COLUMNS))


def list_alerts(client: Any, now: dt.datetime, recent_s: float = 86400.0,
                limit: int = 50) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(open incidents, recent events) for ``driftline alerts list``."""
    open_sql = (
        "SELECT incident, argMax(rule, event_time), argMax(severity, event_time),\n"
        "       argMax(model, event_time), argMax(model_version, event_time),\n"
        "       argMax(segment, event_time), argMax(condition, event_time), min(since),\n"
        "       argMax(event, event_time) AS last_event, max(event_time)\n"
        "FROM driftline.alerts FINAL GROUP BY incident HAVING last_event != 'resolved'\n"
        "ORDER BY min(since)")
    names = ("incident", "rule", "severity", "model", "model_version", "segment", "condition",
             "since", "last_event", "updated")
    opened = [dict(zip(names, r)) for r in client.query(open_sql).result_rows]
    since = now - dt.timedelta(seconds=recent_s)
    recent_sql = (
        "SELECT event_time, event, incident, rule, severity, model, model_version, segment, "
        "condition, value\nFROM driftline.alerts FINAL\n"
        f"WHERE event_time >= toDateTime64('{since.strftime('%Y-%m-%d %H:%M:%S')}', 3, 'UTC')\n"
        f"ORDER BY event_time DESC LIMIT {int(limit)}")
    rnames = ("event_time", "event", "incident", "rule", "severity", "model", "model_version",
              "segment", "condition", "value")
    recent = [dict(zip(rnames, r)) for r in client.query(recent_sql).result_rows]
    return opened, recent


__all__ = ["COLUMNS", "history_row", "insert", "list_alerts"]
