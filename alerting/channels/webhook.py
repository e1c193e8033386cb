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

from driftline.alerting.channels.base import Transport, json_body, json_headers
from driftline.alerting.incidents import Alert, feature_records, window_records
from driftline.alerting.rules import ChannelConfig
from driftline.alerting.signing import SIGNATURE_HEADER, sign

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


def render_alert(alert: Alert, event_id: str) -> dict[str, Any]:
    """An alert event (firing, repeat or resolved) for a plain webhook channel."""
    data = {"incident": alert.dedup_key, "status": alert.event, "rule": alert.rule,
            "kind": alert.kind, "condition": alert.condition, "severity": alert.severity,
            "model": alert.model, "model_version": alert.model_version,
            "segment": alert.segment, "since": alert.since.isoformat(), "value": alert.value,
            "samples": alert.samples, "features": feature_records(alert),
            "windows": window_records(alert), "dashboard": alert.dashboard_link}
    return cloudevent(alert.event, event_id, alert.at.isoformat(), _subject(alert), data)


def render_retrain(alert: Alert, event_id: str) -> dict[str, Any]:
    """A retraining request with its evidence bundle."""
    data = {
        "reason": alert.title, "incident": alert.dedup_key, "rule": alert.rule,
        "model": alert.model, "model_version": alert.model_version, "segment": alert.segment,
        "evidence": {
            "condition": alert.condition, "since": alert.since.isoformat(),
            "until": alert.last_window_end.isoformat(), "windows": window_records(alert),
            "drifted_features": feature_records(alert), "sql": alert.sql,
            "dashboard": alert.dashboard_link,
        },
    }
    return cloudevent("retrain", event_id, alert.at.isoformat(), _subject(alert), data)


def render_test(channel: str, event_id: str, time_iso: str) -> dict[str, Any]:
    """A test event for ``driftline alerts test``."""
    return cloudevent("test", event_id, time_iso, f"channels/{channel}",
                      {"message": f"driftline test notification for channel {channel}"})


class WebhookChannel:
    """A generic JSON webhook; also the channel type that receives retraining requests
    (:func:`render_retrain`, queued by the service for rules with ``retrain``)."""

    type = "webhook"

    def render(self, alert: Alert, key: str) -> dict[str, Any]:
        """:func:`render_alert`, with the outbox key as the CloudEvent ``id``."""
        return render_alert(alert, key)

    def render_test(self, channel: str, key: str, time_iso: str) -> dict[str, Any]:
        """:func:`render_test`."""
        return render_test(channel, key, time_iso)

    def send(self, config: ChannelConfig, body: dict[str, Any], key: str,
             transport: Transport) -> None:
        """POST the CloudEvent, signed when the channel has a secret."""
        data = json_body(body)
        headers = json_headers(key)
        headers["Content-Type"] = "application/cloudevents+json"
        if config.secret is not None:
            # Signed at send time: the receiver's replay window counts from this attempt.
            headers[SIGNATURE_HEADER] = sign(config.secret.reveal(), data, transport.now())
        transport.post(config, data, headers)


__all__ = ["SOURCE", "TYPES", "WebhookChannel", "cloudevent", "render_alert", "render_retrain",
           "render_test"]
