"""The event ``timestamp`` field: RFC 3339 text, written and read here only.

Producers write UTC with microseconds (``2026-11-24T03:22:12.123456Z``); schema v1 accepts any
RFC 3339 stamp matching :data:`TIMESTAMP_PATTERN` (1 to 9 fraction digits, ``Z`` or an offset).

>>> format_timestamp(1_795_000_932_123_456_789)
'2026-11-18T11:22:12.123456Z'
>>> parse_timestamp("2026-11-18T12:22:12.123456+01:00")
datetime.datetime(2026, 11, 18, 11, 22, 12, 123456, tzinfo=datetime.timezone.utc)
>>> timestamp_seconds("2026-11-18T11:22:12.123456Z")
1795000932.123456
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"

# The last whole second formatted and its "YYYY-MM-DDTHH:MM:SS." prefix, swapped as one tuple so
# threads (log_batch callers, the exporter) never pair one second with another's prefix.
_ts_second: list[tuple[int, str]] = [(-1, "")]


def format_timestamp(ts_ns: int) -> str:
    """RFC 3339 UTC with microseconds: ``2026-11-24T03:22:12.123456Z``."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    last = _ts_second[0]
    if secs != last[0]:  # events come thousands per second: format the date part once each
        t = time.gmtime(secs)
        last = _ts_second[0] = (secs, f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:"
                                      f"{t.tm_min:02d}:{t.tm_sec:02d}.")
    return f"{last[1]}{ns // 1000:06d}Z"


def parse_timestamp(ts: str) -> datetime:
    """An RFC 3339 stamp as an aware UTC datetime (fractions past the microsecond dropped).

    Before Python 3.11 ``fromisoformat`` reads neither ``Z`` nor a fraction of other than 3 or 6
    digits, while schema v1 allows 1 to 9: the stamp is put in the one shape every supported
    Python reads (``+00:00``, six fraction digits) first.
    """
    text = ts.replace("Z", "+00:00")
    dot = text.find(".", 19)
    if dot == 19:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        text = f"{text[:20]}{(text[20:end] + '000000')[:6]}{text[end:]}"
    return datetime.fromisoformat(text).astimezone(timezone.utc)


_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds, for UTC stamps


def timestamp_seconds(ts: str) -> float:
    """An RFC 3339 stamp as epoch seconds: ``parse_timestamp(ts).timestamp()``, faster.

    UTC stamps ("...Z", as the SDK and the sidecar write them) parse their whole seconds once
    per second of traffic; the result is the same float ``datetime.timestamp()`` gives
    (whole microseconds over 10**6, fractions past the microsecond dropped).
    """
    if len(ts) >= 20 and ts[-1] == "Z" and ts[19] in ".Z":
        head = ts[:19]
        secs = _SECONDS.get(head)
        if secs is None:
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            secs = _SECONDS[head] = int(datetime.fromisoformat(head + "+00:00").timestamp())
        frac = ts[20:-1]
        if frac.isdigit() or not frac:
            return (secs * 1_000_000 + int((frac + "000000")[:6])) / 1_000_000
    return parse_timestamp(ts).timestamp()
