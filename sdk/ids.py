"""Time-ordered unique ids (UUIDv7, RFC 9562).

Ids sort by creation time at millisecond granularity, so ClickHouse keeps related rows close
and a human can read the order of events from their ids. The 74 random bits come from
``random.getrandbits`` (Mersenne Twister, re-seeded by CPython after ``fork``): ids need
uniqueness, not secrecy, and a syscall per id would double the cost of ``Monitor.log()``.
"""

from __future__ import annotations

import random
import time

_bits = random.getrandbits


def uuid7(now_ns: int | None = None) -> str:
    """Return a new UUIDv7 as a canonical string.

    >>> a = uuid7()
    >>> len(a) == 36 and a[14] == "7" and a[19] in "89ab"
    True
    """
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | _bits(12) << 64 | 0b10 << 62 | _bits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: str) -> int:
    """The creation time in Unix milliseconds encoded in a UUIDv7 string."""
    return int(value.replace("-", "")[:12], 16)
