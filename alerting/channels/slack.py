"""Slack incoming-webhook messages in Block Kit.

A message says what breached (rule and statistic), on which model, version and segment, since
when (the first breaching window), the top drifted features with their impact (when known) and
statistics, and links to the dashboard. ``text`` is the plain fallback Slack shows in notifications.
"""

from __future__ import annotations

from typing import Any

from driftline.alerting.channels.base import Transport, json_body, json_headers
from driftline.alerting.incidents import Alert
from driftline.alerting.rules import ChannelConfig

TOP_FEATURES = 5
_ICON = {"critical": ":red_circle:", "error": ":large_orange_circle:",
         "warning": ":large_yellow_circle:", "info": ":large_blue_circle:"}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def render(alert: Alert, ref: str = "") -> dict[str, Any]:
    """The JSON body to POST to a Slack incoming webhook. ``ref`` is shown as a reference."""
    icon = ":white_check_mark:" if alert.event == "resolved" else _ICON.get(alert.severity, "")
    headline = {"firing": "Alert", "repeat": "Still firing", "resolved": "Resolved"}[alert.event]
    since = alert.since.strftime("%Y-%m-%d %H:%M UTC")
    fields = [
        f"*Model*\n`{alert.model}`", f"*Version*\n`{alert.model_version or '-'}`",
        f"*Segment*\n{alert.segment or 'all traffic'}", f"*Severity*\n{alert.severity}",
        f"*Since*\n{since} (first breaching window)",
        f"*Latest value*\n{_fmt(alert.value)} (n={alert.samples})",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": f"{headline}: {alert.rule}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"{icon} *{alert.condition}* ({alert.kind})"
            + (f"\n{alert.description}" if alert.description else "")
            + (f"\nResolved at {alert.at.strftime('%Y-%m-%d %H:%M UTC')}"
               if alert.event == "resolved" else ""))}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if alert.features:
        lines = []
        for f in alert.features[:TOP_FEATURES]:
            extra = f", p={f.p_value:.3g}" if f.p_value is not None else ""
            stat = f"{f.statistic} *{f.value:.4g}*" if f.impact is None else \
                f"impact *{f.impact:.3g}* · {f.statistic} {f.value:.4g}"
            lines.append(f"• `{f.feature}` {stat}{extra} "
                         f"(n={f.current_size} vs ref {f.reference_size}, {f.detector})")
        more = len(alert.features) - TOP_FEATURES
        if more > 0:
            lines.append(f"…and {more} more")
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": "*Top drifted features*"
            + (" (by impact)" if alert.features[0].impact is not None else "") + "\n" + "\n".join(lines)}})
    if alert.dashboard_link:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open dashboard"},
            "url": alert.dashboard_link}]})
    blocks.append({"type": "context", "elements": [{
        "type": "mrkdwn", "text": f"driftline · incident `{alert.dedup_key}`"
                                  + (f" · ref `{ref}`" if ref else "")}]})
    return {"text": alert.title, "blocks": blocks}


def render_test(channel: str) -> dict[str, Any]:
    """A test message for ``driftline alerts test``."""
    return {"text": f"driftline test notification for channel {channel}",
            "blocks": [{"type": "section", "text": {
                "type": "mrkdwn", "text": f":wave: driftline test notification for `{channel}`"}}]}


class SlackChannel:
    """A Slack incoming webhook (the URL is the secret)."""

    type = "slack"

    def render(self, alert: Alert, key: str) -> dict[str, Any]:
        """:func:`render`, with the outbox key shown as the reference."""
        return render(alert, ref=key)

    def render_test(self, channel: str, key: str, time_iso: str) -> dict[str, Any]:
        """:func:`render_test`."""
        return render_test(channel)

    def send(self, config: ChannelConfig, body: dict[str, Any], key: str,
             transport: Transport) -> None:
        """POST the Block Kit body."""
        transport.post(config, json_body(body), json_headers(key))


__all__ = ["SlackChannel", "render", "render_test"]
