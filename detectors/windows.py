"""Tumbling windows over a model's prediction stream: by event count or by event time.

Count windows close after every ``size`` prediction events. Time windows are aligned to
multiples of ``duration_s`` (epoch based) in event time: the first event at or past the end
closes the window; a quiet window closes once ``poll(now)`` sees ``now >= end + grace_s``.
A late event (before the current window) is counted in the current one: windows hold counts,
not raw events, so there is nothing to reopen.

>>> from driftline.detectors.config import WindowSettings
>>> w = WindowClock(WindowSettings(kind="time", duration_s=60))
>>> w.before_event(125.0), w.start, w.end
(False, 120.0, 180.0)
>>> w.after_event(125.0); w.before_event(190.0)
False
True
"""

from __future__ import annotations

import math
from typing import Any

from driftline.detectors.config import WindowSettings

__all__ = ["WindowClock"]


class WindowClock:
    """Where the current window starts and ends, and when it must close."""

    def __init__(self, settings: WindowSettings) -> None:
        self.settings = settings
        self.start: float | None = None
        self.end: float | None = None
        self.count = 0
        self.late = 0

    @property
    def is_open(self) -> bool:
        return self.start is not None

    def before_event(self, ts: float) -> bool:
        """Open a window if none is open; True if the open one must close before this event."""
        if self.settings.kind == "count":
            if self.start is None:
                self.start = self.end = ts
            return False
        if self.start is None:
            d = self.settings.duration_s
            self.start = math.floor(ts / d) * d
            self.end = self.start + d
            return False
        return ts >= self.end  # type: ignore[operator]

    def after_event(self, ts: float) -> bool:
        """Count the event; True if the window is now full (count windows)."""
        self.count += 1
        if self.settings.kind == "count":
            self.start = min(self.start, ts)  # type: ignore[type-var]
            self.end = max(self.end, ts)  # type: ignore[type-var]
            return self.count >= self.settings.size
        if ts < self.start:  # type: ignore[operator]
            self.late += 1
        return False

    def due(self, now: float) -> bool:
        """A time window whose end (plus grace) has passed on the clock."""
        return (self.settings.kind == "time" and self.end is not None
                and now >= self.end + self.settings.grace_s)

    def bounds(self) -> tuple[float, float]:
        return float(self.start or 0.0), float(self.end or 0.0)

    def close(self) -> None:
        self.start = self.end = None
        self.count = 0
        self.late = 0

    def get_state(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "count": self.count, "late": self.late}

    def set_state(self, state: dict[str, Any]) -> None:
        self.start, self.end = state["start"], state["end"]
        self.count, self.late = int(state["count"]), int(state["late"])
