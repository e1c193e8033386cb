"""Which features drift does not judge, and why: id-like and time-like features recognised from
the reference, and the ``data_drift`` include / exclude / keep settings.

An id or a timestamp differs in every window by construction (a counter passes the reference's
maximum, a UUID is never seen twice), so every drift test flags it in every window and the
verdict means nothing. :func:`recognise` looks at a feature's reference values once, when the
reference is built, and the result is kept in its profile (``FeatureProfile.looks_like``).
:func:`exclusions` turns profiles and settings into ``feature -> reason``; the data-drift
detector reports each excluded feature once per window (statistic ``excluded``, never drift),
the multivariate detectors leave it out, and quality keeps only its pipeline checks on it.
The note is a ``drift_metrics`` row rather than a column on the references table because the
rows are where dashboard and SQL users look for a feature's results (as a per-column drift
report lists every column, tested or not); a missing feature there would look like a bug.

What counts (on at least :data:`MIN_VALUES` present values):

* **timestamp**: numbers of which 99 % lie in 2000-01-01 .. 2100-01-01 as Unix seconds,
  milliseconds, microseconds or nanoseconds (all in one unit), or strings of which 99 % start
  like an ISO-8601 date (``2026-01-05`` or ``2026-01-05T10:00:00Z``);
* **id**: whole numbers that are (near-)unique and either fill most of their range
  (auto-increment keys, even shuffled) or increase along the reference close to a straight line
  (a counter, also one this model sees every k-th value of); strings without spaces that are
  (near-)unique per event (UUIDs, request ids).

A continuous feature is not an id however many distinct values it has: floats are only ever
recognised as timestamps, and whole numbers need to be unique *and* a counter or a dense range.
Ambiguous on purpose: uniformly spread whole numbers in a file sorted by them look like a counter;
``data_drift.keep`` judges such a feature anyway.

>>> import random
>>> rnd = random.Random(0)
>>> recognise([1_767_225_600 + 7 * i for i in range(500)])
'timestamp'
>>> recognise([1000 + i for i in range(500)])
'id'
>>> recognise([rnd.gauss(0, 1) for _ in range(500)])
''
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

__all__ = ["ID", "TIMESTAMP", "REASONS", "MIN_VALUES", "recognise", "exclusions"]

ID = "id"
TIMESTAMP = "timestamp"
#: the note an excluded feature's row carries, by cause
REASONS = {
    ID: "looks like an id",
    TIMESTAMP: "looks like a timestamp",
    "exclude": "excluded in data_drift.exclude",
    "include": "not in data_drift.include",
}
#: fewer present reference values than this: nothing is recognised (too little evidence)
MIN_VALUES = 100

_SHARE = 0.99        # of values in the timestamp range / shaped like a date
_UNIQUE = 0.95       # distinct values / present values, for an id
_INCREASING = 0.95   # of consecutive pairs that increase, for a counter
_DENSE = 0.5         # distinct values / (max - min + 1), for a shuffled auto-increment key
_STRAIGHT = 0.1      # largest distance from the first-to-last line / range, for a counter
_MAX_VALUES = 200_000  # a prefix this long is evidence enough (and keeps the order)
# 2000-01-01 and 2100-01-01 in Unix seconds; scaled for ms, us and ns.
_EPOCH_LO, _EPOCH_HI = 946_684_800.0, 4_102_444_800.0
_UNITS = (1.0, 1e3, 1e6, 1e9)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:$|[T ]\d{2}:\d{2})")


def _numeric(values: Sequence[Any]) -> str:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    n = arr.size
    if n < MIN_VALUES:
        return ""
    for unit in _UNITS:
        inside = (arr >= _EPOCH_LO * unit) & (arr <= _EPOCH_HI * unit)
        if inside.mean() >= _SHARE:
            return TIMESTAMP
    if not np.all(arr == np.round(arr)):
        return ""  # a continuous feature: many distinct values are normal, not an id
    distinct = np.unique(arr).size
    if distinct < _UNIQUE * n:
        return ""
    dense = distinct / (float(arr.max() - arr.min()) + 1.0)
    if dense >= _DENSE:
        return ID
    if float((np.diff(arr) > 0).mean()) < _INCREASING:
        return ""
    # A counter grows along a straight line; whole numbers sorted by value (a training file
    # sorted by income) follow their distribution's quantile curve, far from the line.
    line = np.linspace(arr[0], arr[-1], n)
    bend = float(np.abs(arr - line).max()) / (float(arr[-1] - arr[0]) or 1.0)
    return ID if bend <= _STRAIGHT else ""


def _strings(values: Sequence[Any]) -> str:
    strs = [v for v in values if isinstance(v, str)]
    n = len(strs)
    if n < MIN_VALUES or n < _SHARE * len(values):
        return ""
    if sum(1 for s in strs if _ISO_DATE.match(s)) >= _SHARE * n:
        return TIMESTAMP
    if len(set(strs)) >= _UNIQUE * n and sum(1 for s in strs if " " not in s) >= _SHARE * n:
        return ID
    return ""


def recognise(values: Sequence[Any]) -> str:
    """``'timestamp'``, ``'id'`` or ``''`` for one feature's present reference values, in the
    order they were observed (the order matters for counters). Bools are never either."""
    present = [v for v in values[:_MAX_VALUES] if v is not None and v == v and not isinstance(v, bool)]
    if not present:
        return ""
    numbers = [v for v in present if isinstance(v, (int, float))]
    if len(numbers) == len(present):
        return _numeric(numbers)
    return _strings(present)


def exclusions(profiles: Mapping[str, Any], settings: Any) -> dict[str, str]:
    """``feature -> reason`` for every profiled feature that data drift does not judge.

    ``settings`` is a :class:`~driftline.detectors.config.DataDriftSettings`: ``exclude`` wins;
    with ``include`` set only those features are judged; a feature the reference recognised as
    an id or a timestamp is left out unless ``auto_exclude`` is off or ``keep`` (or ``include``)
    names it.
    """
    out: dict[str, str] = {}
    forced = set(settings.keep) | set(settings.include)
    for name, profile in profiles.items():
        looks = getattr(profile, "looks_like", "")
        if name in settings.exclude:
            out[name] = REASONS["exclude"]
        elif settings.include and name not in settings.include:
            out[name] = REASONS["include"]
        elif looks and settings.auto_exclude and name not in forced:
            out[name] = REASONS[looks]
    return out
