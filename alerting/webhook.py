"""Generic JSON webhooks (CloudEvents 1.0, structured mode) and retraining requests.

Every delivery is signed (see ``signing.py``) when the channel has a secret, and carries an
``Idempotency-Key`` header equal to the CloudEvent ``id``, so that a receiver can drop a request
it already handled (the outbox may re-send after a crash between send and acknowledgement).

A retraining request (type ``io.driftline.retrain.requested``) carries an evidence bundle: the
model and version, the windows that breached, the drifted features with their statistics, and
the SQL that reproduces the evidence against driftline's ClickHouse.
"""

from __future__ import annotations

from typing import Any

from driftline.alerting.incidents import Alert

SOURCE = "driftline/alerting"
TYPES = {"firing": "io.driftline.alert.firing", "repeat": "io.driftline.alert.repeat",
         "resolved": "io.driftline.alert.resolved", "retrain": "io.driftline.retrain.requested",
         "test": "io.driftline.test"}


def cloudevent(event_type: str, event_id: str, time_iso: str, subject: str,
               data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope in structured mode."""
    return {"specversion": "1.0", "type": TYPES[event_type], "source": SOURCE, "id": event_id,
            "time": time_iso, "subject": subject, "datacontenttype": "application/json",
            "data": data}


def _subject(alert: Alert) -> str:
    s = f"models/{alert.model}/versions/{alert.model_version or '-'}"
    return s + (f"/segments/{alert.segment}" if alert.segment else "")


def _features(alert: Alert) -> list[dict[str, Any]]:
    return [{"feature": f.feature, "detector": f.detector, "statistic": f.statistic,
             "value": f.value, "p_value": f.p_value, "threshold": f.threshold,
             "current_size": f.current_size, "reference_size": f.reference_size}
            for f in alert.features]


def _windows(alert: Alert) -> list[dict[str, Any]]:
    return [{"start": w.start.isoformat(), "end": w.end.isoformat(), "value": w.value,
             "samples": w.samples, "breached": w.breached} for w in alert.windows]


def render_alert(alert: Alert, event_id: str) -> dict[str, Any]:
    """An alert event (firing, repeat or resolved) for a plain webhook channel."""
    data = {"incident": alert.dedup_key, "status": alert.event, "rule": alert.rule,
            "kind": alert.kind, "condition": alert.condition, "severity": alert.severity,
            "model": alert.model, "model_version": alert.model_version,
            "segment": alert.segment, "since": alert.since.isoformat(), "value": alert.value,
            "samples": alert.samples, "features": _features(alert), "windows": _windows(alert),
            "dashboard": alert.dashboard_link}
    return cloudevent(alert.event, event_id, alert.at.isoformat(), _subject(alert), data)


def render_retrain(alert: Alert, event_id: str) -> dict[str, Any]:
    """A retraining request with its evidence bundle."""
    data = {
        "reason": alert.title, "incident": alert.dedup_key, "rule": alert.rule,
        "model": alert.model, "model_version": alert.model_version, "segment": alert.segment,
        "evidence": {
            "condition": alert.condition, "since": alert.since.isoformat(),
            "until": alert.last_window_end.isoformat(), "windows": _windows(alert),
            "drifted_features": _features(alert), "sql": alert.sql,
            "dashboard": alert.dashboard_link,
        },
    }
    return cloudevent("retrain", event_id, alert.at.isoformat(), _subject(alert), data)


def render_test(channel: str, event_id: str, time_iso: str) -> dict[str, Any]:
    """A test event for ``driftline alerts test``."""
    return cloudevent("test", event_id, time_iso, f"channels/{channel}",
                      {"message": f"driftline test notification for channel {channel}"})


__all__ = ["SOURCE", "TYPES", "cloudevent", "render_alert", "render_retrain", "render_test"]
