"""Optional e-mail notifications over SMTP (STARTTLS by default).

Rendering happens when the incident event is decided (the text is stored in the outbox); the
password is read from the channel's secret only when sending.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from driftline.alerting.incidents import Alert
from driftline.alerting.rules import Channel


def render(alert: Alert) -> dict[str, Any]:
    """Subject and plain-text body for ``alert``."""
    lines = [alert.title, "", f"Condition: {alert.condition} ({alert.kind})",
             f"Model: {alert.model}  version: {alert.model_version or '-'}  "
             f"segment: {alert.segment or 'all traffic'}",
             f"Since: {alert.since.isoformat()} (first breaching window)",
             f"Latest value: {alert.value} (n={alert.samples})"]
    if alert.features:
        lines += ["", "Top drifted features:"]
        lines += [f"  {f.feature}: {f.statistic}={f.value:.4g} (n={f.current_size})"
                  for f in alert.features[:10]]
    if alert.dashboard_link:
        lines += ["", f"Dashboard: {alert.dashboard_link}"]
    lines += ["", f"Incident: {alert.dedup_key}"]
    return {"subject": alert.title, "text": "\n".join(lines)}


def send(channel: Channel, body: dict[str, Any], idempotency_key: str) -> None:
    """Send one message; raises ``smtplib.SMTPException``/``OSError`` on failure."""
    msg = EmailMessage()
    msg["Subject"] = body["subject"]
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    # Mail clients thread and de-duplicate on Message-ID; keep it stable across retries.
    msg["Message-ID"] = f"<{idempotency_key.replace(':', '.')}@driftline>"
    msg.set_content(body["text"])
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if channel.username and channel.password is not None:
            smtp.login(channel.username, channel.password.reveal())
        smtp.send_message(msg)


__all__ = ["render", "send"]
