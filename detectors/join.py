"""A bounded, time-limited pairing store: predictions waiting for their label, primaries waiting
for their shadow, requests waiting for an outcome.

Entries leave when matched, when they are older than ``ttl_s`` in event time (the watermark is
the newest timestamp seen), or when the store is full (oldest first). Each way out is counted,
so "labels dropped past the horizon" is a number, not a guess.

>>> s = PendingStore(ttl_s=10, max_items=2)
>>> s.put("a", 0.0, 1); s.put("b", 5.0, 2); s.put("c", 6.0, 3)
>>> s.pop("a") is None, s.evicted
(True, 1)
>>> s.expire(20.0), len(s)
(2, 0)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["PendingStore"]


class PendingStore:
    """Key -> (event time in epoch seconds, JSON-able payload), insertion ordered."""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: str, ts: float, payload: Any) -> None:
        self._items[key] = (ts, payload)
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
            self.evicted += 1

    def pop(self, key: str) -> tuple[float, Any] | None:
        return self._items.pop(key, None)

    def get(self, key: str) -> tuple[float, Any] | None:
        return self._items.get(key)

    def oldest_ts(self) -> float | None:
        """Event time of the oldest entry (arrival order), None when empty."""
        items = self._items
        return items[next(iter(items))][0] if items else None

    def evict_oldest(self) -> None:
        """Drop the oldest entry to make room (a memory budget's eviction); counted as evicted."""
        key, _ = self._items.popitem(last=False)
        self.evicted += 1
        self._gone(key)

    def _gone(self, key: str) -> None:
        """``key`` left the store (journaled stores note it)."""

    def expire(self, watermark: float) -> int:
        """Drop entries older than ``watermark - ttl_s``; return how many went."""
        limit = watermark - self.ttl_s
        n = 0
        items = self._items
        # Arrival order is close to event-time order; stop at the first young entry.
        while items:
            key, (ts, _) = next(iter(items.items()))
            if ts >= limit:
                break
            items.popitem(last=False)
            n += 1
        self.expired += n
        return n

    def get_state(self) -> dict[str, Any]:
        return {"items": [[k, ts, p] for k, (ts, p) in self._items.items()],
                "expired": self.expired, "evicted": self.evicted}

    def set_state(self, state: dict[str, Any]) -> None:
        self._items = OrderedDict((k, (float(ts), p)) for k, ts, p in state["items"])
        self.expired = int(state["expired"])
        self.evicted = int(state["evicted"])
