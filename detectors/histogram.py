"""Bounded per-feature sketches: fixed bins taken from the reference, counts per window.

A numeric feature's bins are the reference quantiles between its minimum and maximum, plus two
overflow bins (below the reference minimum, above the maximum), so "out of range" is simply the
mass in the outer bins. A categorical feature keeps the reference's most frequent categories
plus one bucket for everything else (unseen values land there). Memory per feature is the number
of bins, whatever the window length; an update is one ``bisect`` or one dict look-up.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any, Iterable, Sequence

__all__ = [
    "NUMERIC", "CATEGORICAL", "DEFAULT_MAX_CATEGORIES", "FeatureProfile", "Histogram", "value_kind", "category_key",
    "profile_numeric", "profile_categorical", "profile_values",
]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
_MAX_UNSEEN_SAMPLES = 10
#: Categories a reference profile enumerates per feature (the rest share one bucket with values the
#: reference never had). Large enough that a long-tailed feature's known levels are not lumped with
#: new ones: a new category then lands in a bucket the reference left empty and is seen in one window.
DEFAULT_MAX_CATEGORIES = 200
_EDGE_SAMPLE = 200_000


def value_kind(value: Any) -> str | None:
    """'number', 'bool', 'string' or None (missing). Bools are not numbers here."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else "number"
    return "string"


def category_key(value: Any) -> str:
    """The string a categorical value is counted under (``True`` -> ``'true'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class FeatureProfile:
    """Reference summary of one feature: fixed bins and their reference counts.

    numeric: ``edges`` e0..ek; bin 0 is below e0 (the reference min), bins 1..k are
    [e(i-1), e(i)), bin k+1 is at or above ek (just above the reference max). ``sums`` holds
    the sum of values per bin (bin means make Wasserstein distances accurate).
    categorical: ``categories`` name the first bins; the last bin is "other/unseen".
    ``looks_like`` is ``'id'`` or ``'timestamp'`` when the reference values looked like one
    (:func:`driftline.detectors.exclusions.recognise`), else ``''``.
    ``importance`` is how much the model's output depends on the feature, estimated on the
    reference rows from ``importance_from`` (``'prediction'`` or ``'label'``); None when unknown
    (a reference without predictions, or stored before importance existed). See
    :mod:`driftline.detectors.impact`.
    """

    name: str
    kind: str
    dtype: str
    counts: tuple[int, ...]
    n: int
    missing: int
    edges: tuple[float, ...] = ()
    sums: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    looks_like: str = ""
    importance: float | None = None
    importance_from: str = ""

    @property
    def missing_rate(self) -> float:
        total = self.n + self.missing
        return self.missing / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        # Shallow: every field is a scalar or a tuple of scalars (json writes tuples as lists);
        # dataclasses.asdict deep-copied each tuple.
        return {f.name: getattr(self, f.name) for f in _PROFILE_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FeatureProfile":
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**kw)


_PROFILE_FIELDS = dataclasses.fields(FeatureProfile)


def profile_numeric(name: str, values: Sequence[float], *, bins: int, missing: int = 0) -> FeatureProfile:
    """Quantile bins over ``values`` (finite numbers)."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return FeatureProfile(name, NUMERIC, "number", (0, 0), 0, missing, edges=(0.0,), sums=(0.0, 0.0))
    lo, hi = float(arr.min()), float(arr.max())
    # Bin edges only partition the axis (counts below are exact), so on big data the quantiles
    # of a fixed-seed sample are as good and far cheaper than sorting every value.
    basis = arr if arr.size <= _EDGE_SAMPLE else arr[np.random.default_rng(0).integers(0, arr.size, _EDGE_SAMPLE)]
    uniq = np.unique(basis)
    if uniq.size <= bins:
        qs = uniq  # few distinct values (counts, codes): one bin each, so nothing is merged
    else:
        qs = np.quantile(basis, np.linspace(0.0, 1.0, bins + 1)[1:-1]) if bins > 1 else np.array([])
    inner = [float(q) for q in np.unique(qs) if lo < q <= hi]
    # The last edge sits just above the max so that the max itself is "in range".
    edges = [lo, *inner, math.nextafter(hi, math.inf)]
    idx = np.searchsorted(np.asarray(edges), arr, side="right")
    nb = len(edges) + 1
    counts = np.bincount(idx, minlength=nb)
    sums = np.bincount(idx, weights=arr, minlength=nb)
    return FeatureProfile(
        name, NUMERIC, "number", tuple(int(c) for c in counts), int(arr.size), int(missing),
        edges=tuple(edges), sums=tuple(float(s) for s in sums), mean=float(arr.mean()),
        std=float(arr.std()), minimum=lo, maximum=hi,
    )


def profile_categorical(name: str, values: Iterable[Any], *, max_categories: int,
                        missing: int = 0, dtype: str = "string") -> FeatureProfile:
    """Top ``max_categories`` categories by reference frequency, the rest lumped together."""
    freq: dict[str, int] = {}
    for v in values:
        k = category_key(v)
        freq[k] = freq.get(k, 0) + 1
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
    cats = tuple(k for k, _ in top)
    n = sum(freq.values())
    other = n - sum(c for _, c in top)
    return FeatureProfile(name, CATEGORICAL, dtype, tuple(c for _, c in top) + (other,), n,
                          int(missing), categories=cats)


def profile_values(name: str, values: Sequence[Any], *, bins: int, max_categories: int,
                   categorical: bool = False) -> FeatureProfile:
    """Profile raw values of one feature, choosing numeric or categorical by the values seen."""
    present = [v for v in values if value_kind(v) is not None]
    missing = len(values) - len(present)
    kinds = {value_kind(v) for v in present}
    if not categorical and kinds == {"number"}:
        return profile_numeric(name, present, bins=bins, missing=missing)
    dtype = "bool" if kinds == {"bool"} else ("number" if kinds == {"number"} else "string")
    return profile_categorical(name, present, max_categories=max_categories, missing=missing,
                               dtype=dtype)


class Histogram:
    """Counts of one feature over the current window, in the reference's bins."""

    __slots__ = ("profile", "counts", "sums", "n", "missing", "type_errors", "unseen", "_index",
                 "_edges", "_numeric")

    def __init__(self, profile: FeatureProfile) -> None:
        self.profile = profile
        self._numeric = profile.kind == NUMERIC
        self._edges = list(profile.edges)
        self._index = {c: i for i, c in enumerate(profile.categories)}
        self.clear()

    def clear(self) -> None:
        nb = len(self.profile.counts)
        self.counts = [0] * nb
        self.sums = [0.0] * nb if self._numeric else []
        self.n = 0
        self.missing = 0
        self.type_errors = 0
        self.unseen: dict[str, int] = {}

    def add(self, value: Any) -> None:
        """Count one value; ``None``/NaN count as missing, wrong types as type errors."""
        if value is None:
            self.missing += 1
            return
        if self._numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.type_errors += 1
                return
            if value != value:  # NaN
                self.missing += 1
                return
            i = bisect.bisect_right(self._edges, value)
            self.counts[i] += 1
            self.sums[i] += value
            self.n += 1
            return
        key = value if isinstance(value, str) else category_key(value)
        i = self._index.get(key)
        if i is None:
            i = len(self.counts) - 1
            # Unseen names are evidence for the quality report; keep a bounded sample.
            if key in self.unseen or len(self.unseen) < _MAX_UNSEEN_SAMPLES:
                self.unseen[key] = self.unseen.get(key, 0) + 1
        self.counts[i] += 1
        self.n += 1

    def add_many(self, value: Any, count: int) -> None:
        """Count ``count`` copies of one non-missing value (columnar batches)."""
        if self._numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.type_errors += count
                return
            i = bisect.bisect_right(self._edges, value)
            self.counts[i] += count
            self.sums[i] += value * count
            self.n += count
            return
        key = value if isinstance(value, str) else category_key(value)
        i = self._index.get(key)
        if i is None:
            i = len(self.counts) - 1
            if key in self.unseen or len(self.unseen) < _MAX_UNSEEN_SAMPLES:
                self.unseen[key] = self.unseen.get(key, 0) + count
        self.counts[i] += count
        self.n += count

    def out_of_range(self) -> int:
        """Numeric values outside the reference [min, max]."""
        return self.counts[0] + self.counts[-1] if self._numeric else 0

    def get_state(self) -> dict[str, Any]:
        return {"counts": self.counts, "sums": self.sums, "n": self.n, "missing": self.missing,
                "type_errors": self.type_errors, "unseen": self.unseen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.counts = list(state["counts"])
        self.sums = list(state["sums"])
        self.n = int(state["n"])
        self.missing = int(state["missing"])
        self.type_errors = int(state["type_errors"])
        self.unseen = dict(state["unseen"])
