"""PagerDuty Events API v2: trigger and resolve with a stable ``dedup_key``.

The routing key is a secret and is added only when the request is built, so it is never stored
in the outbox. PagerDuty deduplicates on ``dedup_key``: a trigger repeated after a crash does not
open a second incident, and a resolve closes the incident its trigger opened.
"""

from __future__ import annotations

from typing import Any

from driftline.alerting.channels.base import Transport, json_body, json_headers
from driftline.alerting.incidents import Alert
from driftline.alerting.rules import ChannelConfig

_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def render(alert: Alert) -> dict[str, Any]:
    """The event for ``alert`` without ``routing_key`` (see :func:`with_routing_key`)."""
    if alert.event == "resolved":
        return {"event_action": "resolve", "dedup_key": alert.dedup_key}
    details: dict[str, Any] = {
        "rule": alert.rule, "condition": alert.condition, "model": alert.model,
        "model_version": alert.model_version, "segment": alert.segment or "all traffic",
        "since": alert.since.isoformat(), "value": alert.value, "samples": alert.samples,
        "top_features": [
            {"feature": f.feature, "statistic": f.statistic, "value": f.value,
             "p_value": f.p_value, "detector": f.detector,
             **({} if f.impact is None else {"impact": f.impact})} for f in alert.features[:10]],
    }
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": {
            "summary": alert.title[:1024],
            "source": f"driftline:{alert.model}",
            "severity": _SEVERITY[alert.severity],
            "timestamp": alert.at.isoformat(),
            "component": alert.model,
            "group": alert.segment or "all",
            "class": alert.kind,
            "custom_details": details,
        },
        "client": "driftline",
    }
    if alert.dashboard_link:
        event["client_url"] = alert.dashboard_link
        event["links"] = [{"href": alert.dashboard_link, "text": "driftline dashboard"}]
    return event


def render_test(channel: str, key: str) -> dict[str, Any]:
    """A low-severity test trigger for ``driftline alerts test``."""
    return {"event_action": "trigger", "dedup_key": key, "payload": {
        "summary": f"driftline test notification for channel {channel}",
        "source": "driftline", "severity": "info"}}


def with_routing_key(event: dict[str, Any], routing_key: str) -> dict[str, Any]:
    """A copy of ``event`` carrying the routing key, built just before sending."""
    return {"routing_key": routing_key, **event}


class PagerDutyChannel:
    """PagerDuty Events API v2; ``repeat`` events are skipped because PagerDuty keeps paging on
    its own and a re-trigger adds nothing."""

    type = "pagerduty"

    def render(self, alert: Alert, key: str) -> dict[str, Any] | None:
        """:func:`render`, or None for a ``repeat`` event."""
        return None if alert.event == "repeat" else render(alert)

    def render_test(self, channel: str, key: str, time_iso: str) -> dict[str, Any]:
        """:func:`render_test`."""
        return render_test(channel, key)

    def send(self, config: ChannelConfig, body: dict[str, Any], key: str,
             transport: Transport) -> None:
        """POST the event with the routing key added."""
        assert config.routing_key is not None
        event = with_routing_key(body, config.routing_key.reveal())
        transport.post(config, json_body(event), json_headers(key))


__all__ = ["PagerDutyChannel", "render", "render_test", "with_routing_key"]
