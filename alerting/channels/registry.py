"""Which implementation serves each configured channel ``type``.

The registry is a read-only mapping of stateless implementations, so the service and the
deliverer share it without sharing state; the set of keys is what ``rules.CHANNEL_TYPES``
accepts (a test checks the two agree).

>>> channel_for("slack").type
'slack'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from driftline.alerting.channels.base import Channel
from driftline.alerting.channels.email import EmailChannel
from driftline.alerting.channels.pagerduty import PagerDutyChannel
from driftline.alerting.channels.slack import SlackChannel
from driftline.alerting.channels.webhook import WebhookChannel

_IMPLEMENTATIONS: tuple[Channel, ...] = (SlackChannel(), PagerDutyChannel(), WebhookChannel(),
                                         EmailChannel())
CHANNELS: Mapping[str, Channel] = MappingProxyType({c.type: c for c in _IMPLEMENTATIONS})


def channel_for(channel_type: str) -> Channel:
    """The implementation of ``channel_type``; a KeyError names the known types."""
    try:
        return CHANNELS[channel_type]
    except KeyError:
        raise KeyError(f"unknown channel type {channel_type!r}; known: "
                       f"{', '.join(CHANNELS)}") from None


__all__ = ["CHANNELS", "channel_for"]
