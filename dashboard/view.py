"""What a page shows: model, version, segment and time range, to and from deep links.

A deep link looks like ``/?page=model&model=M&version=V&segment=region%3Deu&from=ISO&to=ISO``
(the alerting service emits exactly this shape). :func:`parse_params` reads it; :func:`link`
writes it, so every page can point at another one for the same slice of traffic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Mapping
from urllib.parse import urlencode

UTC = dt.timezone.utc

#: preset label -> seconds
PRESETS: dict[str, int] = {
    "Last 15 minutes": 900, "Last hour": 3600, "Last 6 hours": 6 * 3600,
    "Last 24 hours": 86400, "Last 7 days": 7 * 86400, "Last 30 days": 30 * 86400,
}
DEFAULT_PRESET = "Last 24 hours"
CUSTOM = "Custom (from link or picker)"
# Bucket widths a chart may use; the smallest one giving at most ~120 points wins.
_BUCKETS_S = (10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)


def parse_time(text: str | None) -> dt.datetime | None:
    """ISO 8601 (``Z`` or offset, or naive = UTC) to an aware UTC datetime; ``None`` if unusable."""
    if not text:
        return None
    s = text.strip().replace("Z", "+00:00")
    if len(s) > 6 and s[-6] == " " and s[-3] == ":":  # a '+' that a URL decoded as a space
        s = s[:-6] + "+" + s[-5:]
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def iso(t: dt.datetime) -> str:
    """``2026-11-24T03:22:12Z`` (seconds precision, as in alert links)."""
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ch_time(t: dt.datetime) -> str:
    """A literal ClickHouse parses with ``toDateTime64(s, 6, 'UTC')``."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def bucket_for(span_s: float, max_points: int = 120) -> int:
    """Bucket width in seconds for a time range of ``span_s`` seconds."""
    for b in _BUCKETS_S:
        if span_s / b <= max_points:
            return b
    return _BUCKETS_S[-1]


@dataclass(frozen=True)
class View:
    """One slice of traffic. ``segment`` is '' (all traffic) or ``tag=value``; ``version`` ''
    means every version."""

    model: str
    start: dt.datetime
    end: dt.datetime
    version: str = ""
    segment: str = ""
    feature: str = ""

    @property
    def span_s(self) -> float:
        return max(1.0, (self.end - self.start).total_seconds())

    @property
    def bucket_s(self) -> int:
        return bucket_for(self.span_s)

    @property
    def segment_pair(self) -> tuple[str, str] | None:
        if "=" not in self.segment:
            return None
        k, v = self.segment.split("=", 1)
        return k, v

    def with_(self, **kw: Any) -> "View":
        return replace(self, **kw)


@dataclass(frozen=True)
class LinkParams:
    """What a deep link asked for (any field may be missing)."""

    page: str = ""
    model: str = ""
    version: str = ""
    segment: str = ""
    feature: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None


def parse_params(params: Mapping[str, Any]) -> LinkParams:
    """Read ``st.query_params`` (or any mapping of str to str)."""
    def get(k: str) -> str:
        v = params.get(k, "")
        if isinstance(v, (list, tuple)):
            v = v[0] if v else ""
        return str(v or "")

    start, end = parse_time(get("from")), parse_time(get("to"))
    if start and end and end <= start:
        start = end = None
    return LinkParams(page=get("page"), model=get("model"), version=get("version"),
                      segment=get("segment"), feature=get("feature"), start=start, end=end)


def link(page: str, model: str = "", version: str = "", segment: str = "",
         start: dt.datetime | None = None, end: dt.datetime | None = None, base: str = "",
         feature: str = "") -> str:
    """A deep link in the same shape the alerting service emits (``feature`` opens the model
    page's drill-down on that feature)."""
    q = {"page": page}
    for k, v in (("model", model), ("version", version), ("segment", segment), ("feature", feature)):
        if v:
            q[k] = v
    if start is not None:
        q["from"] = iso(start)
    if end is not None:
        q["to"] = iso(end)
    return f"{base.rstrip('/')}/?{urlencode(q)}"


__all__ = ["CUSTOM", "DEFAULT_PRESET", "LinkParams", "PRESETS", "View", "bucket_for", "ch_time",
           "iso", "link", "parse_params", "parse_time"]
