"""A :class:`~driftline.alerting.channels.Transport` that records instead of sending."""

from __future__ import annotations

from typing import Any

from driftline.alerting.rules import ChannelConfig


class RecordingTransport:
    def __init__(self, now: float = 1_772_325_600.0) -> None:
        self._now = now
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self.mails: list[tuple[str, dict[str, Any], str]] = []

    def now(self) -> float:
        return self._now

    def post(self, config: ChannelConfig, body: bytes, headers: dict[str, str]) -> None:
        self.posts.append((config.name, body, headers))

    def send_mail(self, config: ChannelConfig, body: dict[str, Any], key: str) -> None:
        self.mails.append((config.name, body, key))
