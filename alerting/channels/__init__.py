"""driftline.alerting.channels: one :class:`Channel` interface, one implementation per type.

``slack``, ``pagerduty``, ``webhook`` (CloudEvents, signed retraining requests) and ``email``
each render an incident event or a test message into a body for the outbox and send a stored
body through the deliverer's :class:`Transport`. :func:`channel_for` maps a configured channel
``type`` to its implementation.
"""

from __future__ import annotations

from driftline.alerting.channels.base import Channel, Transport
from driftline.alerting.channels.registry import CHANNELS, channel_for

__all__ = ["CHANNELS", "Channel", "Transport", "channel_for"]
