"""Bounded LRU cache of scrub results, keyed by a keyed hash of the value.

Categorical strings repeat endlessly in a prediction stream ("gold", "DE", "mobile"), so most
values are scrubbed once and then looked up. The cache key is ``HMAC-SHA256(key, value)``: the
raw value is never held as a key, and without the key a memory dump cannot be probed for a
guessed value. The cached *result* is the scrubbed text, i.e. exactly what is stored anyway.

Example
-------
>>> cache = KeyedCache(b"k" * 32, max_entries=2)
>>> k = cache.key("p", "gold")
>>> cache.get(k) is None
True
>>> cache.put(k, ("gold", ()))
>>> cache.get(k)
('gold', ())
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["KeyedCache"]

V = TypeVar("V")


class KeyedCache(Generic[V]):
    """LRU mapping ``HMAC(key, namespace + value) -> result`` with at most ``max_entries``."""

    def __init__(self, key: bytes, max_entries: int) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._key = key
        self._max = max_entries
        self._data: OrderedDict[bytes, V] = OrderedDict()

    def key(self, namespace: str, value: str) -> bytes:
        """The cache key of ``value`` within ``namespace`` (policy profile and field context)."""
        # hmac.digest is the one-shot C implementation: ~1 µs for a short value.
        return hmac.digest(self._key, f"{namespace}\x00{value}".encode("utf-8", "surrogatepass"), "sha256")

    def get(self, key: bytes) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: bytes, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._max:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
