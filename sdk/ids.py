"""Time-ordered unique ids (UUIDv7, RFC 9562).

Ids sort by creation time, so ClickHouse keeps related rows close and a human can read the
order of events from their ids. Monotonic within one process: the 12-bit ``rand_a`` field is a
counter that keeps ids strictly increasing inside one millisecond.
"""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(now_ns: int | None = None) -> str:
    """Return a new UUIDv7 as a canonical string.

    >>> a, b = uuid7(), uuid7()
    >>> a < b and len(a) == 36 and a[14] == "7"
    True
    """
    global _last_ms, _counter
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | counter << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str) -> int:
    """The creation time in Unix milliseconds encoded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)
