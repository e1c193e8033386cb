"""Data drift and prediction drift over windows, against a reference.

:class:`HistogramSet` is the per-window sketch of a set of features (one fixed-bin
:class:`~driftline.detectors.histogram.Histogram` each). :class:`DataDriftDetector` tests every
feature at window close and gives it a verdict; every statistic row of the feature carries that
verdict as ``drift``, and whether the statistic crossed its own threshold as ``exceeded``; a
feature it does not judge (see :mod:`~driftline.detectors.exclusions`) gets one ``excluded`` row
per window saying why.

``calibration: budget`` (default): the verdict is any calibrated test of the feature (Wilcoxon,
Mood, KS or chi2, and the missing-value rate; :mod:`~driftline.detectors.rank_tests`) under the
per-test level of the model's false-alarm budget, on the window or pooled with the previous
windows (:mod:`~driftline.detectors.calibration`); PSI, Jensen–Shannon and Wasserstein rows are
magnitudes against fixed thresholds. The owner sets :attr:`DataDriftDetector.budget` before
closing (a standalone detector spends the configured budget on its own tests) and one detector
per model writes the ``alarm_budget`` row. ``calibration: fixed``: the verdict test per kind over
its threshold and the corrected KS / chi2 test significant.
A feature with a drift verdict gets one ``impact`` row (importance x magnitude, see
:mod:`~driftline.detectors.impact`), and the dataset row lists the drifted features by impact.
:class:`PredictionDriftDetector` does the same over the model's derived outputs (label or value,
top-class confidence, entropy) and reports their means.

>>> from driftline.detectors.config import DataDriftSettings
>>> from driftline.detectors.histogram import profile_numeric
>>> det = DataDriftDetector({"x": profile_numeric("x", list(range(1000)), bins=10)},
...                        DataDriftSettings(), min_samples=50)
>>> for i in range(100): det.update({"x": 5000 + i})
>>> res = det.close_window(); det.drift_detected
True
"""

from __future__ import annotations

import bisect
import dataclasses
import operator
from typing import Any, Mapping, Sequence

from driftline.detectors.base import (
    STAT_ALARM_BUDGET, STAT_DRIFTED_SHARE, STAT_EXCLUDED, Detector, DetectorResult,
)
from driftline.detectors.calibration import (
    MIN_COLUMNAR_FEATURES, AlarmBudget, PooledWindows, calibrated_tests, feature_test_count,
)
from driftline.detectors.columns import numeric_matrix
from driftline.detectors.config import DataDriftSettings, WindowSettings
from driftline.detectors.correction import adjust_p_values
from driftline.detectors.exclusions import exclusions
from driftline.detectors.histogram import NUMERIC, FeatureProfile, Histogram
from driftline.detectors.impact import impact_results
from driftline.detectors.univariate import (
    P_VALUE_TESTS, chi2_homogeneity, js_distance, js_distance_batch, ks_binned, psi, psi_batch, wasserstein_binned,
    wasserstein_binned_batch,
)

__all__ = ["HistogramSet", "DataDriftDetector", "PredictionDriftDetector"]

_MIN_COLUMNAR = 32  # fewer rows than this: numpy's fixed costs outweigh the per-value loop


class HistogramSet:
    """Window counts of several features; one ``update`` costs O(number of features)."""

    def __init__(self, profiles: Mapping[str, FeatureProfile]) -> None:
        self.hists = {name: Histogram(p) for name, p in profiles.items()}
        # Fast path for numeric values: bisect + two list increments, no method call.
        self._numeric = [(n, h._edges, h, ) for n, h in self.hists.items() if h.profile.kind == NUMERIC]
        self._other = [(n, h) for n, h in self.hists.items() if h.profile.kind != NUMERIC]
        self._columns: Any = None  # (itemgetter of the numeric names, their edges as arrays), lazily
        self.events = 0

    def update(self, features: Mapping[str, Any]) -> None:
        get = features.get
        bis = bisect.bisect_right
        self.events += 1
        for name, edges, h in self._numeric:
            v = get(name)
            cls = v.__class__
            if (cls is float or cls is int) and v == v:
                i = bis(edges, v)
                h.counts[i] += 1
                h.sums[i] += v
            else:
                h.add(v)
        for name, h in self._other:
            h.add(get(name))

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The numeric features of ``rows`` as floats (:func:`numeric_matrix`: built once per batch
        for every detector), or None when some row lacks one or holds something else, or for fewer
        than ``_MIN_COLUMNAR`` rows (then a loop over the values is cheaper)."""
        if not self._numeric or len(rows) < _MIN_COLUMNAR:
            return None
        if self._columns is None:
            import numpy as np

            names = tuple(n for n, _, _ in self._numeric)
            self._columns = (names, [np.asarray(e, dtype=float) for _, e, _ in self._numeric])
        return numeric_matrix(rows, self._columns[0])

    def update_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``update`` for each of ``rows`` in order, with the same result to the last bit.

        When every row carries every numeric feature as an int or float (the usual case), the
        numeric features are counted column by column in numpy: one ``searchsorted`` per
        feature instead of a ``bisect`` per value, and sums accumulated in row order
        (``np.add.at``), so the floats equal the one-by-one path's whatever the batching.
        Anything else (a missing value, a string, a bool) takes the one-by-one path.
        """
        if len(rows) < _MIN_COLUMNAR or not self._numeric:
            for r in rows:
                self.update(r)
            return
        import numpy as np

        matrix = self.matrix(rows)
        if matrix is None:
            for r in rows:
                self.update(r)
            return
        self.events += len(rows)
        edges = self._columns[1]
        for j, (_, _, h) in enumerate(self._numeric):
            col = matrix[:, j]
            ok = col == col  # NaN is missing, as in update()
            if not ok.all():
                h.missing += int((~ok).sum())
                col = col[ok]
            idx = np.searchsorted(edges[j], col, side="right")
            counts = np.bincount(idx, minlength=len(h.counts))
            sums = np.asarray(h.sums, dtype=float)
            np.add.at(sums, idx, col)  # unbuffered, in row order: the same rounding as one by one
            h.counts = [a + b for a, b in zip(h.counts, counts.tolist())]
            h.sums = sums.tolist()
        for name, h in self._other:
            add = h.add
            for r in rows:
                add(r.get(name))

    def update_columns(self, columns: Mapping[str, Any], n_rows: int) -> None:
        """Add a columnar micro-batch (name -> numpy array / pandas Series) in one pass each."""
        import numpy as np
        import pandas as pd

        self.events += n_rows
        for name, h in self.hists.items():
            col = columns.get(name)
            if col is None:
                h.missing += n_rows
                continue
            s = pd.Series(col)
            if h.profile.kind == NUMERIC and pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                arr = s.to_numpy(dtype=float)
                ok = np.isfinite(arr)
                h.missing += int((~ok).sum())
                arr = arr[ok]
                idx = np.searchsorted(np.asarray(h._edges), arr, side="right")
                nb = len(h.counts)
                cnt = np.bincount(idx, minlength=nb)
                sm = np.bincount(idx, weights=arr, minlength=nb)
                h.counts = [a + int(b) for a, b in zip(h.counts, cnt)]
                h.sums = [a + float(b) for a, b in zip(h.sums, sm)]
            else:
                h.missing += int(s.isna().sum())
                # Only distinct values reach Python: O(rows) stays in pandas.
                for value, c in s.dropna().value_counts().items():
                    h.add_many(value.item() if hasattr(value, "item") else value, int(c))

    def sizes(self, name: str) -> tuple[int, int]:
        """(values counted, missing) for a feature in this window."""
        h = self.hists[name]
        return sum(h.counts), h.missing

    def clear(self) -> None:
        self.events = 0
        for h in self.hists.values():
            h.clear()

    def get_state(self) -> dict[str, Any]:
        return {"events": self.events, "hists": {k: h.get_state() for k, h in self.hists.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.events = int(state["events"])
        for k, st in state["hists"].items():
            if k in self.hists:
                self.hists[k].set_state(st)


def _feature_tests(profile: FeatureProfile, h: Histogram, tests: tuple[str, ...]) -> list[tuple[str, float, float | None]]:
    ref, cur = profile.counts, h.counts
    out: list[tuple[str, float, float | None]] = []
    for t in tests:
        if t == "psi":
            out.append((t, psi(ref, cur), None))
        elif t == "jensen_shannon":
            out.append((t, js_distance(ref, cur), None))
        elif t == "ks":
            d, p = ks_binned(ref, cur)
            out.append((t, d, p))
        elif t == "wasserstein":
            scale = profile.std if profile.std > 0 else (abs(profile.mean) or 1.0)
            out.append((t, wasserstein_binned(ref, profile.sums, cur, h.sums, scale), None))
        elif t == "chi2":
            stat, p = chi2_homogeneity(ref, cur)
            out.append((t, stat, p))
    return out


_BATCHED = ("psi", "jensen_shannon", "wasserstein")


def magnitude_tests(judged: Sequence[tuple[str, FeatureProfile]], hists: Mapping[str, Histogram],
                    numeric: tuple[str, ...], categorical: tuple[str, ...]) -> dict[str, list[tuple[str, float]]]:
    """Feature -> [(test, value)] of the descriptive tests (``numeric`` or ``categorical``, in that
    order) of each judged feature: :func:`_feature_tests`, with the numeric features of the same
    bins as (features x bins) matrices (``univariate``'s ``*_batch``: equal to a few units in the
    last place)."""
    import numpy as np

    out: dict[str, list[tuple[str, float]]] = {}
    groups: dict[int, list[tuple[str, FeatureProfile]]] = {}
    for name, profile in judged:
        h = hists[name]
        width = len(h.counts)
        if (profile.kind == NUMERIC and set(numeric) <= set(_BATCHED) and len(profile.counts) == width
                and len(profile.sums) == width == len(h.sums)):
            groups.setdefault(width, []).append((name, profile))
        else:
            out[name] = _values(profile, h, numeric if profile.kind == NUMERIC else categorical)
    for members in groups.values():
        if len(members) < MIN_COLUMNAR_FEATURES:
            out.update((n, _values(p, hists[n], numeric)) for n, p in members)
            continue
        ref = np.array([p.counts for _, p in members], dtype=float)
        cur = np.array([hists[n].counts for n, _ in members], dtype=float)
        ref_sums = np.array([p.sums for _, p in members], dtype=float)
        cur_sums = np.array([hists[n].sums for n, _ in members], dtype=float)
        finite = (np.isfinite(ref_sums).all(1) & np.isfinite(cur_sums).all(1)).tolist()
        scale = [p.std if p.std > 0 else (abs(p.mean) or 1.0) for _, p in members]
        values = {"psi": psi_batch(ref, cur) if "psi" in numeric else None,
                  "jensen_shannon": js_distance_batch(ref, cur) if "jensen_shannon" in numeric else None,
                  "wasserstein": (wasserstein_binned_batch(ref, ref_sums, cur, cur_sums, scale)
                                  if "wasserstein" in numeric else None)}
        lists = {t: v.tolist() for t, v in values.items() if v is not None}
        for i, (name, profile) in enumerate(members):
            if finite[i]:
                out[name] = [(t, lists[t][i]) for t in numeric]
            else:  # an infinite value in a bin: the scalar functions say what it means
                out[name] = _values(profile, hists[name], numeric)
    return out


def _values(profile: FeatureProfile, h: Histogram, tests: tuple[str, ...]) -> list[tuple[str, float]]:
    """(test, value) of :func:`_feature_tests`, one feature at a time."""
    return [(t, v) for t, v, _ in _feature_tests(profile, h, tests)]


class DataDriftDetector(Detector):
    """Per-feature drift of one stream (one model version and segment) against its reference."""

    name = "data_drift"
    #: one impact row per drifted feature, dataset row's list by impact (detectors/impact.py)
    rank_by_impact = True

    def __init__(self, profiles: Mapping[str, FeatureProfile], settings: DataDriftSettings, *,
                 min_samples: int = 100, histograms: HistogramSet | None = None) -> None:
        super().__init__()
        s = settings
        #: feature -> why it is not judged (config, or it looks like an id / a timestamp)
        self.excluded = exclusions(profiles, s)
        keep = {k: p for k, p in profiles.items() if k not in self.excluded}
        self.reference_sizes = {k: p.n for k, p in profiles.items() if k in self.excluded}
        self.settings = s
        self.min_samples = min_samples
        self.profiles = keep
        self.window = histograms if histograms is not None else HistogramSet(keep)
        self.drifted: tuple[str, ...] = ()
        self._feature_verdicts: dict[str, bool] = {}
        self.pool = PooledWindows(max(s.scales) - 1 if s.calibration == "budget" else 0)
        #: set by the owner before ``close_window``: (alpha_window, per-test alpha, budget
        #: details) of the whole model; None: this detector's own tests, configured windows
        self.budget: tuple[float, float, tuple[tuple[str, Any], ...]] | None = None
        #: whether this detector writes the model's ``alarm_budget`` row
        self.emit_budget = True

    def update(self, features: Mapping[str, Any]) -> None:  # type: ignore[override]
        self.window.update(features)

    def update_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``update`` for each row, in order (columnar; see :meth:`HistogramSet.update_many`)."""
        self.window.update_many(rows)

    def _verdict_test(self, profile: FeatureProfile) -> str:
        s = self.settings
        return s.verdict_numeric if profile.kind == NUMERIC else s.verdict_categorical

    def _threshold(self, test: str) -> float:
        return float(getattr(self.settings.thresholds, "alpha" if test in ("ks", "chi2") else test))

    def calibrated_test_count(self) -> int:
        """Calibrated tests this detector runs per window (0 with ``calibration: fixed``)."""
        if self.settings.calibration != "budget":
            return 0
        return sum(feature_test_count(p, self.settings) for p in self.profiles.values())

    def _budget(self) -> tuple[float, float, tuple[tuple[str, Any], ...]]:
        if self.budget is not None:
            return self.budget
        b = AlarmBudget(self.settings.alarm_budget, WindowSettings())
        tests = self.calibrated_test_count()
        return b.alpha_window, b.per_test_alpha(tests), b.details(tests)

    def _evaluate(self) -> list[DetectorResult]:
        if self.settings.calibration == "fixed":
            return self._evaluate_fixed()
        return self._finish(*self._evaluate_budget())

    def _evaluate_budget(self) -> tuple[list[DetectorResult], set[str], list[str]]:
        """Calibrated rows (verdict) and descriptive distances of every judged feature."""
        s = self.settings
        _, alpha, _ = self._budget()
        hists = self.window.hists
        best: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for name, stat, value, p, k in calibrated_tests(self.profiles, hists, self.pool, s, self.min_samples):
            best.setdefault((name, stat), []).append((p, value, k))
        for name in self.profiles:
            h = hists[name]
            self.pool.push(name, h.counts, h.missing)
        rows: dict[str, list[DetectorResult]] = {}
        deciders: dict[str, list[str]] = {}
        sizes = {name: sum(h.counts) for name, h in hists.items()}
        by_p, by_scale = operator.itemgetter(0, 2), operator.itemgetter(2)
        for (name, stat), found in best.items():
            profile = self.profiles[name]
            p, value, k = min(found, key=by_p)
            exceeded = p < alpha
            if exceeded:
                deciders.setdefault(name, []).append(f"{stat} at {k} window{'s' if k > 1 else ''}")
            details = (("scale", k), ("p_by_scale", tuple((kk, pp) for pp, _, kk in sorted(found, key=by_scale))),
                       ("calibration", "budget"), ("verdict", True), ("kind", profile.kind))
            rows.setdefault(name, []).append(DetectorResult(
                self.name, name, stat, value, p, alpha, exceeded, profile.n, sizes[name], details, exceeded=exceeded))
        judged = [(name, profile) for name, profile in self.profiles.items()
                  if sizes[name] >= self.min_samples and profile.n != 0]
        magnitudes = {kind: tuple(t for t in tests if t not in P_VALUE_TESTS)
                      for kind, tests in ((NUMERIC, s.numeric_tests), ("", s.categorical_tests))}
        found_magnitudes = magnitude_tests(judged, hists, magnitudes[NUMERIC], magnitudes[""])
        for name, profile in judged:
            n = sizes[name]
            for test, value in found_magnitudes[name]:
                thr = self._threshold(test)
                rows.setdefault(name, []).append(DetectorResult(
                    self.name, name, test, value, None, thr, value > thr, profile.n, n,
                    (("verdict", False), ("kind", profile.kind)), exceeded=value > thr))
        results: list[DetectorResult] = []
        drifted = [name for name in rows if name in deciders]
        for name, rs in rows.items():
            why = ", ".join(deciders.get(name, ()))
            results += [dataclasses.replace(r, details=r.details + (("decided_by", why),)) if why else r
                        for r in rs]
        return results, set(rows), drifted

    def _finish(self, results: list[DetectorResult], tested: set[str], drifted: list[str]) -> list[DetectorResult]:
        """Excluded rows, the dataset verdict and the budget row; sets :attr:`drifted`."""
        s = self.settings
        verdicts = dict.fromkeys(tested, False) | dict.fromkeys(drifted, True)
        if self.window.events:
            # Visible, not silent: a feature missing from the results would look like a bug.
            for name, reason in self.excluded.items():
                results.append(DetectorResult(
                    self.name, name, STAT_EXCLUDED, 0.0, None, None, False, self.reference_sizes[name],
                    self.window.events, (("reason", reason), ("verdict", False))))
        if tested:
            share = len(drifted) / len(tested)
            verdicts["*"] = share >= s.dataset_drift_share
            results.append(DetectorResult(
                self.name, "*", STAT_DRIFTED_SHARE, share, None, s.dataset_drift_share,
                verdicts["*"], 0, self.window.events,
                (("drifted", tuple(drifted)), ("tested", len(tested)))))
        if s.calibration == "budget" and self.emit_budget:
            alpha_window, _, details = self._budget()
            results.append(DetectorResult(self.name, "*", STAT_ALARM_BUDGET, alpha_window, None, None,
                                          verdicts.get("*", False), 0, self.window.events, details,
                                          exceeded=False))
        self.drifted = tuple(drifted)
        self._feature_verdicts = verdicts
        return results

    def _evaluate_fixed(self) -> list[DetectorResult]:
        s = self.settings
        raw: list[tuple[str, FeatureProfile, int, str, float, float | None]] = []
        sig_raw: dict[str, float] = {}
        for name, profile in self.profiles.items():
            h = self.window.hists[name]
            n = sum(h.counts)
            if n < self.min_samples or profile.n == 0:
                continue  # no verdict on too few values
            tests = s.numeric_tests if profile.kind == NUMERIC else s.categorical_tests
            sig_test = "ks" if profile.kind == NUMERIC else "chi2"
            for test, value, p in _feature_tests(profile, h, tests):
                raw.append((name, profile, n, test, value, p))
                if test == sig_test:
                    sig_raw[name] = p  # type: ignore[assignment]
            if s.require_significance and name not in sig_raw:
                sig_raw[name] = _feature_tests(profile, h, (sig_test,))[0][2]  # type: ignore[assignment]
        # One significance test per feature, corrected for the number of features tested.
        sig = dict(zip(sig_raw, adjust_p_values(list(sig_raw.values()), s.correction)))
        alpha = s.thresholds.alpha
        results: list[DetectorResult] = []
        drifted: list[str] = []
        tested: set[str] = set()
        for name, profile, n, test, value, p in raw:
            thr = self._threshold(test)
            details: tuple[tuple[str, Any], ...] = ()
            if p is not None:
                details = (("raw_p_value", p), ("correction", s.correction))
                p = sig[name]
                exceeded = p < thr
            else:
                exceeded = value > thr
            verdict = test == self._verdict_test(profile)
            drift = exceeded
            if verdict and s.require_significance:
                # Material AND significant: a distance over its threshold on a small window can
                # be noise; the corrected test says whether the window could be the reference.
                details += (("significant", sig[name] < alpha), ("adjusted_p_value", sig[name]))
                drift = drift and sig[name] < alpha
            details += (("verdict", verdict), ("kind", profile.kind))
            # ``drift`` is provisional here: _judge gives every row its feature's verdict.
            results.append(DetectorResult(self.name, name, test, value, p, thr, drift, profile.n, n,
                                          details, exceeded=exceeded))
            tested.add(name)
            if verdict and drift:
                drifted.append(name)
        return self._finish(results, tested, drifted)

    def close_window(self) -> tuple[DetectorResult, ...]:
        results = self._judge(self._evaluate(), self._feature_verdicts)
        if self.rank_by_impact:  # before clear(): the impact rows read the window's counts
            results = impact_results(self.name, results, self.verdicts, self.profiles,
                                     self.window.hists, self.settings)
        self._drift = bool(self.drifted)
        self.window.clear()
        return results

    def get_state(self) -> dict[str, Any]:
        return {"window": self.window.get_state(), "drift": self._drift, "drifted": list(self.drifted),
                "pool": self.pool.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.window.set_state(state["window"])
        self._drift = bool(state["drift"])
        self.drifted = tuple(state["drifted"])
        self.pool.set_state(state.get("pool"))

    def reset(self) -> None:
        self.window.clear()
        self.pool.clear()
        self._drift = False
        self._verdicts = {}
        self.drifted = ()


class PredictionDriftDetector(DataDriftDetector):
    """Drift of the model's outputs; ``update`` takes derived output features
    (:func:`~driftline.detectors.reference.prediction_features`)."""

    name = "prediction_drift"
    rank_by_impact = False  # the outputs are the model's own: importance to itself means nothing

    def _evaluate(self) -> list[DetectorResult]:
        results = super()._evaluate()
        for name, profile in self.profiles.items():
            h = self.window.hists[name]
            n = sum(h.counts)
            if profile.kind != NUMERIC or n < self.min_samples:
                continue
            mean = sum(h.sums) / n
            # Mean confidence / entropy: the number a person reads first on a dashboard.
            results.append(DetectorResult(self.name, name, "mean", mean, None, None,
                                          name in self.drifted, profile.n, n,
                                          (("reference_mean", profile.mean),), exceeded=False))
        return results
