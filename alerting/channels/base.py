"""The one interface every channel type implements, and what delivery lends it to send with.

A channel turns an incident event into a message body when the event is decided (the body is
stored in the outbox as JSON, without secrets), and later sends a stored body through a
:class:`Transport`. Retries, rate limits, SSRF checks and the sorting of failures into "retry" or
"give up" stay in :class:`~driftline.alerting.delivery.Deliverer`, which is the transport; a
channel only says what goes on the wire.

Example, a channel that posts the alert title as JSON::

    class TitleChannel:
        type = "title"

        def render(self, alert, key):
            return {"title": alert.title}

        def render_test(self, channel, key, time_iso):
            return {"title": f"test for {channel}"}

        def send(self, config, body, key, transport):
            transport.post(config, json_body(body), json_headers(key))
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from driftline.alerting.incidents import Alert
from driftline.alerting.rules import ChannelConfig

USER_AGENT = "driftline-alerting/1"


class Transport(Protocol):
    """Sending machinery a channel may use; failures are raised, never retried here."""

    def now(self) -> float:
        """Unix seconds of this attempt (a webhook signs with it)."""
        ...

    def post(self, config: ChannelConfig, body: bytes, headers: dict[str, str]) -> None:
        """POST ``body`` to ``config.url`` after the SSRF check; raises on a non-2xx answer."""
        ...

    def send_mail(self, config: ChannelConfig, body: dict[str, Any], key: str) -> None:
        """Send a rendered e-mail body over SMTP with ``config``'s server and credentials."""
        ...


class Channel(Protocol):
    """One channel type: ``slack``, ``pagerduty``, ``webhook`` or ``email``.

    ``key`` is the outbox idempotency key of the message (``<channel>:<incident>:<event>``).
    """

    type: str

    def render(self, alert: Alert, key: str) -> dict[str, Any] | None:
        """The body announcing ``alert``, or None when this channel skips such an event."""
        ...

    def render_test(self, channel: str, key: str, time_iso: str) -> dict[str, Any]:
        """The body of ``driftline alerts test`` for the channel named ``channel``."""
        ...

    def send(self, config: ChannelConfig, body: dict[str, Any], key: str,
             transport: Transport) -> None:
        """Put one stored body on the wire (secrets are added here, not at render time)."""
        ...


def json_body(body: dict[str, Any]) -> bytes:
    """The canonical JSON encoding of a body (sorted keys, no spaces): what gets signed."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def json_headers(key: str) -> dict[str, str]:
    """Headers of a JSON POST; ``Idempotency-Key`` lets a receiver drop a re-sent message."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": key}


__all__ = ["USER_AGENT", "Channel", "Transport", "json_body", "json_headers"]
