"""Optional e-mail notifications over SMTP (STARTTLS by default).

Rendering happens when the incident event is decided (the text is stored in the outbox); the
password is read from the channel's secret only when sending.

Failures are raised in the shapes :class:`~driftline.alerting.delivery.Deliverer` sorts:
an ``smtplib.SMTPResponseException`` carries the server's code (4xx retried, 5xx failed), any
other ``smtplib.SMTPException`` or ``OSError`` is retried. A refused recipient is turned into a
response exception with the server's code, because smtplib otherwise reports a partly refused
message as sent and a wholly refused one without a code.
"""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from driftline.alerting.channels.base import Transport
from driftline.alerting.incidents import Alert
from driftline.alerting.rules import ChannelConfig

TOP_FEATURES = 10
_HEADLINE = {"firing": "Incident opened", "repeat": "Still firing", "resolved": "Resolved"}


# Not in the error tree (sdk/errors.py): these three are smtplib errors on purpose, so the deliverer
# classifies them with smtplib's own (SMTPNotSupportedError: permanent; a response code: 4xx retried,
# 5xx failed). They end as a delivery's failure reason in the outbox and never reach users.
class StartTLSNotOffered(smtplib.SMTPNotSupportedError):
    """The channel says ``starttls: true`` but the server does not offer STARTTLS; nothing
    (least of all the password) is sent in clear."""


# Not in the error tree: an smtplib error on purpose, as above.
class AuthNotOffered(smtplib.SMTPNotSupportedError):
    """The channel has a username but the server offers no AUTH (often: only after STARTTLS)."""


# Not in the error tree: an smtplib error on purpose, as above.
class RecipientsRefused(smtplib.SMTPResponseException):
    """The server refused some or all recipients; ``smtp_code`` is the most permanent code."""


def _one_line(s: str) -> str:
    # A CR/LF in a header value makes EmailMessage raise; model and segment names come from
    # events, so fold them rather than let one odd name stop delivery.
    return " ".join(s.split())


def render(alert: Alert) -> dict[str, Any]:
    """Subject and plain-text body for ``alert``.

    The subject is :attr:`Alert.title` (severity or RESOLVED, rule, condition, model, version,
    segment); the body says what changed, since when, the top drifted features and links to
    the dashboard.
    """
    subject = alert.title
    if alert.event == "repeat":
        subject = subject.replace("] ", "] Still firing: ", 1)
    lines = [f"{_HEADLINE.get(alert.event, alert.event)}: {alert.rule} ({alert.severity})", "",
             f"Condition: {alert.condition} ({alert.kind})"]
    if alert.description:
        lines.append(alert.description)
    lines += [f"Model: {alert.model}  version: {alert.model_version or '-'}  "
              f"segment: {alert.segment or 'all traffic'}",
              f"Since: {alert.since.strftime('%Y-%m-%d %H:%M UTC')} (first breaching window)",
              f"Latest value: {'n/a' if alert.value is None else f'{alert.value:.4g}'} "
              f"(n={alert.samples})"]
    if alert.event == "resolved":
        lines.append(f"Resolved at: {alert.at.strftime('%Y-%m-%d %H:%M UTC')}")
    if alert.features:
        lines += ["", "Top drifted features:"]
        for f in alert.features[:TOP_FEATURES]:
            extra = f", p={f.p_value:.3g}" if f.p_value is not None else ""
            imp = "" if f.impact is None else f"impact={f.impact:.3g}, "
            lines.append(f"  {f.feature}: {imp}{f.statistic}={f.value:.4g}{extra} "
                         f"(n={f.current_size} vs ref {f.reference_size}, {f.detector})")
        if len(alert.features) > TOP_FEATURES:
            lines.append(f"  ...and {len(alert.features) - TOP_FEATURES} more")
    if alert.dashboard_link:
        lines += ["", f"Dashboard: {alert.dashboard_link}"]
    lines += ["", f"Incident: {alert.dedup_key}"]
    return {"subject": subject, "text": "\n".join(lines), "incident": alert.dedup_key,
            "event": alert.event}


def _message_id(key: str) -> str:
    return f"<{key.replace(':', '.')}@driftline>"


def build_message(channel: ChannelConfig, body: dict[str, Any],
                  idempotency_key: str) -> EmailMessage:
    """The message :func:`send_smtp` sends (exposed for tests and previews)."""
    msg = EmailMessage()
    msg["Subject"] = _one_line(str(body["subject"]))
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    msg["Date"] = email.utils.formatdate(usegmt=True)
    # Mail clients thread and de-duplicate on Message-ID; keep it stable across retries.
    msg["Message-ID"] = _message_id(idempotency_key)
    incident, event = body.get("incident"), body.get("event")
    if incident and event in ("repeat", "resolved"):
        # Thread follow-ups under the opening mail (its key is "<channel>:<incident>:firing").
        first = _message_id(f"{channel.name}:{incident}:firing")
        msg["In-Reply-To"] = first
        msg["References"] = first
    msg.set_content(str(body["text"]))
    return msg


def _refused(refused: dict[str, tuple[int, bytes]], accepted: int) -> RecipientsRefused:
    codes = [code for code, _ in refused.values()]
    # One permanent refusal makes the message fail (a typo in `to:` must be seen); otherwise
    # the server asked to try later.
    code = max(codes) if any(c >= 500 for c in codes) else min(codes)
    who = ", ".join(f"{rcpt} ({c} {m.decode('utf-8', 'replace')[:80]})"
                    for rcpt, (c, m) in sorted(refused.items()))
    return RecipientsRefused(code, f"recipients refused: {who}; accepted by {accepted}")


def send_smtp(channel: ChannelConfig, body: dict[str, Any], idempotency_key: str,
              context: ssl.SSLContext | None = None) -> None:
    """Send one message; raises ``smtplib.SMTPException``/``OSError`` on failure.

    With ``starttls`` the server's certificate is checked against ``smtp_host`` with
    ``context`` (default: the system's CAs, which honours ``SSL_CERT_FILE``).
    """
    msg = build_message(channel, body, idempotency_key)
    with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=channel.timeout_s) as smtp:
        smtp.ehlo()
        if channel.starttls:
            if not smtp.has_extn("starttls"):
                raise StartTLSNotOffered(
                    f"{channel.smtp_host}:{channel.smtp_port} does not offer STARTTLS "
                    "(starttls: true); nothing was sent")
            smtp.starttls(context=context or ssl.create_default_context())
            smtp.ehlo()
        if channel.username and channel.password is not None:
            if not smtp.has_extn("auth"):
                raise AuthNotOffered(f"{channel.smtp_host}:{channel.smtp_port} offers no AUTH")
            smtp.login(channel.username, channel.password.reveal())
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients, 0) from None
        if refused:
            raise _refused(refused, len(channel.to) - len(refused))


def render_test(channel: str) -> dict[str, Any]:
    """A test message for ``driftline alerts test``."""
    return {"subject": f"driftline test notification for {channel}",
            "text": f"driftline test notification for channel {channel}"}


class EmailChannel:
    """E-mail over SMTP; the transport's ``send_mail`` is :func:`send_smtp` unless injected."""

    type = "email"

    def render(self, alert: Alert, key: str) -> dict[str, Any]:
        """:func:`render`."""
        return render(alert)

    def render_test(self, channel: str, key: str, time_iso: str) -> dict[str, Any]:
        """:func:`render_test`."""
        return render_test(channel)

    def send(self, config: ChannelConfig, body: dict[str, Any], key: str,
             transport: Transport) -> None:
        """Send the mail; ``key`` becomes its stable Message-ID."""
        transport.send_mail(config, body, key)


__all__ = ["AuthNotOffered", "EmailChannel", "RecipientsRefused", "StartTLSNotOffered",
           "build_message", "render", "render_test", "send_smtp"]
