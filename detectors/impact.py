"""Which drift matters: each input feature's importance to the model, and a drifted feature's impact.

**Importance** is estimated once, when a reference is built, without the model: how much the
model's output depends on the feature on the reference rows. It is the mutual information between
the feature's reference bins (a missing value is a bin of its own) and the prediction (its label;
a regressor's value in :data:`TARGET_BINS` quantile bins; the true label when the reference has
labels but no predictions), minus the mean mutual information over :data:`PERMUTATIONS` shuffles
of the prediction (what a feature unrelated to the output shows on this many rows: the plug-in
estimate is biased upwards, most for many bins and few rows), divided by the prediction's entropy;
0 when it is within 2 standard deviations of the shuffles' mean (indistinguishable from noise).
That is Theil's uncertainty coefficient, the share of the output's uncertainty the feature
explains, in [0, 1]: ~0 for a noise feature, 1 when the output is a function of the feature.
It is pairwise: a feature that matters only together with another (an XOR) gets ~0. A reference
without predictions (a file with no prediction column) has no importance: every feature then
weighs 1, and the impact rows say ``importance_from: unknown``. ``data_drift.importance`` in a
model's configuration overrides the estimate (a feature it does not name weighs 0).

**Magnitude** is the Jensen–Shannon distance between the window's and the reference's counts on
the feature's bins (base 2, in [0, 1], comparable across features and kinds).

**Impact** = importance × magnitude. For every feature with a drift verdict in a window, data
drift writes one row ``statistic = impact`` (:data:`~driftline.detectors.base.STAT_IMPACT`):
``value`` the impact, ``details`` its importance, where the importance came from, its magnitude
and its rank among the window's drifted features (1 = most impact); the dataset row
(``drifted_share``) lists the drifted features by impact. Prediction drift writes no impact rows
(its features are the output itself).

>>> import numpy as np
>>> from driftline.detectors.histogram import profile_numeric
>>> rng = np.random.default_rng(0)
>>> x, noise = rng.normal(size=5000), rng.normal(size=5000)
>>> y = np.where(x > 0, "yes", "no")
>>> profiles = {n: profile_numeric(n, v, bins=20) for n, v in (("x", x), ("noise", noise))}
>>> imp = estimate_importance(profiles, {"x": x, "noise": noise}, y)
>>> imp["x"] > 0.5, imp["noise"] < 0.01
(True, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from driftline.detectors.base import STAT_DRIFTED_SHARE, STAT_IMPACT, DetectorResult
from driftline.detectors.histogram import NUMERIC, FeatureProfile, category_key, value_kind
from driftline.detectors.univariate import js_distance

if TYPE_CHECKING:
    from driftline.detectors.config import DataDriftSettings
    from driftline.detectors.histogram import Histogram

__all__ = [
    "FROM_PREDICTION", "FROM_LABEL", "FROM_CONFIG", "FROM_UNKNOWN", "TARGET_BINS", "PERMUTATIONS",
    "bin_codes", "target_codes", "estimate_importance", "with_importance", "feature_weights",
    "magnitude", "impact_results",
]

#: where a feature's importance came from (``importance_from`` in the impact row's details)
FROM_PREDICTION = "prediction"
FROM_LABEL = "label"
FROM_CONFIG = "config"
FROM_UNKNOWN = "unknown"

#: quantile bins of a numeric prediction (a regressor's value)
TARGET_BINS = 10
#: most frequent prediction labels kept apart; the rest share one class
TARGET_CLASSES = 50
#: shuffles of the prediction whose mean mutual information is the no-dependence baseline
PERMUTATIONS = 8
#: rows the estimate reads at most (a fixed-seed sample of a bigger reference)
IMPORTANCE_ROWS = 200_000


def bin_codes(profile: FeatureProfile, values: Any) -> Any:
    """Each value's bin in ``profile`` (as :class:`~driftline.detectors.histogram.Histogram`
    counts it) as an int array; a missing or wrongly typed value gets bin ``len(profile.counts)``."""
    import numpy as np

    nb = len(profile.counts)
    if profile.kind == NUMERIC:
        if getattr(values, "dtype", None) is not None and values.dtype.kind in "fiu":
            arr = np.asarray(values, dtype=float)  # a numeric column: no per-value Python
        else:
            arr = np.array([v if value_kind(v) == "number" else math.nan for v in _plain(values)],
                           dtype=float)
        ok = np.isfinite(arr)
        codes = np.full(arr.size, nb, dtype=np.int64)
        codes[ok] = np.searchsorted(np.asarray(profile.edges, dtype=float), arr[ok], side="right")
        return codes
    vals = _plain(values)
    index = {c: i for i, c in enumerate(profile.categories)}
    other = nb - 1
    return np.array([nb if value_kind(v) is None else index.get(category_key(v), other) for v in vals],
                    dtype=np.int64)


def target_codes(values: Any) -> Any | None:
    """The prediction (or label) of each row as a class code, ``-1`` where it is missing; None
    when fewer than two classes are present (nothing to depend on). Numbers with more distinct
    values than :data:`TARGET_BINS` are cut at their quantiles; anything else is a label (named
    as :func:`~driftline.detectors.histogram.category_key` names it)."""
    import numpy as np
    import pandas as pd

    vals = _plain(values)
    # Distinct values only reach Python: a reference can have millions of rows, few labels.
    raw, uniques = pd.factorize(pd.Series(vals, dtype=object), use_na_sentinel=True)
    uniq = [u.item() if hasattr(u, "item") else u for u in uniques.tolist()]
    kinds = [value_kind(u) for u in uniq]
    present = [k is not None for k in kinds]
    raw = np.where(raw >= 0, raw, len(uniq))
    if set(k for k in kinds if k is not None) == {"number"} and sum(present) > TARGET_BINS:
        num = np.array([u if k is not None else math.nan for u, k in zip(uniq, kinds)] + [math.nan])
        arr = num[raw]
        ok = np.isfinite(arr)
        cuts = np.unique(np.quantile(arr[ok], np.linspace(0, 1, TARGET_BINS + 1)[1:-1]))
        codes = np.full(arr.size, -1, dtype=np.int64)
        codes[ok] = np.searchsorted(cuts, arr[ok], side="right")
        return codes if np.unique(codes[ok]).size > 1 else None
    keys = [category_key(u) if k is not None else None for u, k in zip(uniq, kinds)]
    per_unique = np.bincount(raw, minlength=len(uniq) + 1)
    freq: dict[str, int] = {}
    for k, c in zip(keys, per_unique.tolist()):
        if k is not None:
            freq[k] = freq.get(k, 0) + c
    if sum(1 for c in freq.values() if c) < 2:
        return None
    top = sorted(freq, key=lambda k: (-freq[k], k))[:TARGET_CLASSES]
    index = {k: i for i, k in enumerate(top)}
    lookup = np.array([-1 if k is None else index.get(k, len(top)) for k in keys] + [-1], dtype=np.int64)
    return lookup[raw]


def _plain(values: Any) -> list[Any]:
    # Python values (numpy scalars become int/float/str), as Histogram.add sees them.
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _take(values: Any, rows: Any) -> Any:
    # Row subset of a column: a pandas Series, a numpy array or a plain list.
    if hasattr(values, "iloc"):
        s = values.iloc[rows]
        if s.dtype.kind in "fiub":
            return s.to_numpy()
        return s.astype(object).where(s.notna(), None).to_numpy()  # pd.NA / NaT are missing
    if hasattr(values, "dtype"):
        return values[rows]
    return [values[i] for i in rows.tolist()]


def _entropy(counts: Any) -> float:
    import numpy as np

    c = counts[counts > 0].astype(float)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_information(x: Any, y: Any, nx: int, ny: int) -> float:
    import numpy as np

    joint = np.bincount(x * ny + y, minlength=nx * ny)
    return (_entropy(np.bincount(x, minlength=nx)) + _entropy(np.bincount(y, minlength=ny))
            - _entropy(joint))


def estimate_importance(profiles: Mapping[str, FeatureProfile], columns: Mapping[str, Any],
                        target: Any, *, permutations: int = PERMUTATIONS, seed: int = 0) -> dict[str, float]:
    """Importance of each feature of ``profiles`` (see the module docstring), from row-aligned
    ``columns`` (feature -> values) and ``target`` (the prediction or label of each row).

    Empty when the target has fewer than two classes; a feature with no column weighs 0, and so
    does one whose mutual information is within 2 standard deviations of the shuffles' mean.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(target)
    rows = np.arange(n)
    if n > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(n, IMPORTANCE_ROWS, replace=False))
        target = _take(target, rows)
    y = target_codes(target)
    if y is None:
        return {}
    known = y >= 0  # rows without a prediction say nothing about dependence
    rows, y = rows[known], y[known]
    ny = int(y.max()) + 1
    h_y = _entropy(np.bincount(y, minlength=ny))
    if h_y <= 0.0:
        return {}
    # The same shuffles for every feature: their baselines are comparable.
    shuffles = [rng.permutation(y) for _ in range(permutations)]
    out: dict[str, float] = {}
    for name, profile in profiles.items():
        col = columns.get(name)
        if col is None:
            out[name] = 0.0
            continue
        x = bin_codes(profile, _take(col, rows))
        nx = len(profile.counts) + 1
        mi = _mutual_information(x, y, nx, ny)
        null = np.array([_mutual_information(x, s, nx, ny) for s in shuffles] or [0.0])
        # Indistinguishable from the shuffles (within 2 SD): 0, so that among features the
        # output does not depend on, the drift magnitude alone orders their impact.
        significant = mi > null.mean() + 2.0 * null.std(ddof=1 if null.size > 1 else 0)
        out[name] = min(1.0, float(mi - null.mean()) / h_y) if significant else 0.0
    return out


def with_importance(profiles: Mapping[str, FeatureProfile], columns: Mapping[str, Any], target: Any,
                    source: str) -> dict[str, FeatureProfile]:
    """``profiles`` with :attr:`FeatureProfile.importance` estimated from ``target`` (see
    :func:`estimate_importance`) and ``importance_from = source``; unchanged when the target has
    fewer than two classes (importance unknown)."""
    imp = estimate_importance(profiles, columns, target)
    if not imp:
        return dict(profiles)
    return {k: dataclasses.replace(p, importance=imp[k], importance_from=source) if k in imp else p
            for k, p in profiles.items()}


def feature_weights(profiles: Mapping[str, FeatureProfile],
                    settings: "DataDriftSettings") -> dict[str, tuple[float, str]]:
    """Feature -> (importance, where it came from): the configured ``data_drift.importance`` when
    set (a feature it does not name weighs 0), else the reference's estimate, else 1 (unknown)."""
    override = settings.importance
    if override:
        return {k: (float(override.get(k, 0.0)), FROM_CONFIG) for k in profiles}
    return {k: (1.0, FROM_UNKNOWN) if p.importance is None else (float(p.importance), p.importance_from or FROM_PREDICTION)
            for k, p in profiles.items()}


def magnitude(profile: FeatureProfile, hist: "Histogram") -> float:
    """Jensen–Shannon distance of the window's counts from the reference's, in [0, 1]."""
    return js_distance(profile.counts, hist.counts)


def impact_results(detector: str, results: Sequence[DetectorResult], verdicts: Mapping[str, bool],
                   profiles: Mapping[str, FeatureProfile], hists: Mapping[str, "Histogram"],
                   settings: "DataDriftSettings") -> tuple[DetectorResult, ...]:
    """``results`` plus one impact row per feature with a drift verdict, and the dataset row's
    ``drifted`` list ordered by impact (highest first; ties by magnitude, then name).

    Called by :meth:`DataDriftDetector.close_window
    <driftline.detectors.drift.DataDriftDetector.close_window>` before the window is cleared.
    """
    drifted = [f for f, v in verdicts.items() if v and f in profiles and f in hists]
    if not drifted:
        return tuple(results)
    weights = feature_weights(profiles, settings)
    scored = []
    for f in drifted:
        importance, source = weights[f]
        mag = magnitude(profiles[f], hists[f])
        scored.append((importance * mag, mag, f, importance, source))
    scored.sort(key=lambda t: (-t[0], -t[1], t[2]))
    order = tuple(t[2] for t in scored)
    out = []
    for r in results:
        if r.statistic == STAT_DRIFTED_SHARE and r.feature == "*":
            listed = dict(r.details).get("drifted", ())
            ranked = tuple(f for f in order if f in listed) + tuple(f for f in listed if f not in order)
            r = dataclasses.replace(r, details=tuple((k, ranked if k == "drifted" else v) for k, v in r.details))
        out.append(r)
    for rank, (impact, mag, f, importance, source) in enumerate(scored, 1):
        h = hists[f]
        out.append(DetectorResult(
            detector, f, STAT_IMPACT, impact, None, None, True, profiles[f].n, sum(h.counts),
            (("importance", importance), ("importance_from", source), ("magnitude", mag),
             ("rank", rank), ("verdict", False)), exceeded=False))
    return tuple(out)
