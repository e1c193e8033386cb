"""Calibrated drift verdicts: a false-alarm budget split into per-test levels, and the tests of
each feature on the window alone and pooled with the previous windows.

:class:`AlarmBudget` turns ``data_drift.alarm_budget`` ("at most 1 false verdict per model per
week") into the probability of a false verdict per model and window (``alpha_window``), from the
window length (time windows) or the observed time span of closed windows (count windows), and
into the level of each test: ``alpha_window`` divided by the number of calibrated tests the model
runs (Bonferroni; conservative here, the tests of one feature are positively correlated).

:class:`PooledWindows` keeps the last windows' counts of each feature (bounded: the largest scale
minus one), so :func:`calibrated_tests` tests the window and the pooled last k windows against
the reference: an exactly valid two-sample test on a larger sample, which is what makes a
persistent small shift visible within a few windows.

>>> from driftline.detectors.config import AlarmBudgetSettings, WindowSettings
>>> b = AlarmBudget(AlarmBudgetSettings(), WindowSettings(kind="time", duration_s=3600))
>>> b.windows_per_period, b.source, round(b.alpha_window, 6)
(168.0, 'observed traffic', 0.005952)
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

from driftline.detectors.config import BUDGET_PERIODS_S, AlarmBudgetSettings, DataDriftSettings, WindowSettings
from driftline.detectors.histogram import NUMERIC, FeatureProfile, Histogram
from driftline.detectors.rank_tests import (
    chi2_merged, ks_grouped, ks_grouped_batch, rank_tests_batch, rate_test, rate_test_batch,
)

__all__ = ["AlarmBudget", "PooledWindows", "calibrated_tests", "feature_test_count",
           "STAT_MISSING", "OBSERVED", "CONFIGURED"]

#: statistic of the missing-value rate test (window vs reference), on every feature
STAT_MISSING = "missing"
OBSERVED = "observed traffic"
CONFIGURED = "configured windows"
# Weight of the newest window span in the traffic estimate: follows a change of traffic within
# ~10 windows without letting one odd window swing the levels.
_EWMA = 0.2


class AlarmBudget:
    """The false-alarm budget of one model in probabilities per window and per test."""

    def __init__(self, settings: AlarmBudgetSettings, window: WindowSettings) -> None:
        self.settings = settings
        self.window = window
        self.span_s: float | None = None  # EWMA of closed count windows' event-time spans
        self.observed = 0

    def observe_window(self, start: float, end: float) -> None:
        """A window closed; its event-time span estimates the traffic (count windows)."""
        span = end - start
        if self.window.kind != "count" or not span > 0:
            return
        self.observed += 1
        self.span_s = span if self.span_s is None else (1 - _EWMA) * self.span_s + _EWMA * span

    @property
    def source(self) -> str:
        if self.window.kind == "time" or (self.span_s is not None
                                          and self.observed >= self.settings.min_observed_windows):
            return OBSERVED
        return CONFIGURED

    @property
    def windows_per_period(self) -> float:
        period = BUDGET_PERIODS_S[self.settings.per]
        if self.window.kind == "time":
            return period / self.window.duration_s
        if self.source == OBSERVED:
            return period / self.span_s  # type: ignore[operator]
        return float(self.settings.windows)

    @property
    def alpha_window(self) -> float:
        return min(self.settings.max_window_alpha, self.settings.false_verdicts / self.windows_per_period)

    def per_test_alpha(self, tests: int) -> float:
        return self.alpha_window / max(1, tests)

    def details(self, tests: int) -> tuple[tuple[str, Any], ...]:
        """What the ``alarm_budget`` row says (the dashboard reads these names)."""
        s = self.settings
        return (("false_verdicts", s.false_verdicts), ("per", s.per),
                ("windows_per_period", self.windows_per_period), ("source", self.source),
                ("per_test_alpha", self.per_test_alpha(tests)), ("tests", tests))

    def get_state(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "observed": self.observed}

    def set_state(self, state: Mapping[str, Any] | None) -> None:
        state = state or {}
        self.span_s = state.get("span_s")
        self.observed = int(state.get("observed", 0))


def feature_test_count(profile: FeatureProfile, settings: DataDriftSettings) -> int:
    """Calibrated tests of one feature in one window (every scale counts)."""
    kinds = len(settings.calibrated_numeric) if profile.kind == NUMERIC else 1
    return (kinds + 1) * len(settings.scales)


class PooledWindows:
    """The counts and missing values of each feature in the last ``depth`` closed windows."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.ring: dict[str, deque[tuple[list[int], int]]] = {}

    def push(self, name: str, counts: Sequence[int], missing: int) -> None:
        if self.depth:
            self.ring.setdefault(name, deque(maxlen=self.depth)).append((list(counts), int(missing)))

    def pooled(self, name: str, counts: Sequence[int], missing: int, k: int) -> tuple[list[int], int] | None:
        """The window plus the previous ``k - 1``; None while fewer windows were seen."""
        past = self.ring.get(name, ())
        if k - 1 > len(past):
            return None
        out, miss = list(counts), missing
        for c, m in list(past)[len(past) - (k - 1):] if k > 1 else ():
            out = [a + b for a, b in zip(out, c)]
            miss += m
        return out, miss

    def aligned(self, name: str, width: int) -> int | None:
        """How many windows ``name`` has pooled, when each has ``width`` counts (else None)."""
        past = self.ring.get(name, ())
        return len(past) if all(len(c) == width for c, _ in past) else None

    def clear(self) -> None:
        self.ring.clear()

    def get_state(self) -> dict[str, Any]:
        return {k: [[c, m] for c, m in v] for k, v in self.ring.items()}

    def set_state(self, state: Mapping[str, Any] | None) -> None:
        self.ring = {k: deque(((list(c), int(m)) for c, m in v), maxlen=self.depth)
                     for k, v in (state or {}).items()}


#: fewer numeric features than this with the same bins: one at a time (numpy's fixed costs would
#: outweigh the loop; ``bench/bench_window_close.py``: break-even at ~5, 0.6x at 20)
MIN_COLUMNAR_FEATURES = 8

# One calibrated test result: feature, statistic, value, p-value, scale.
Outcome = tuple[str, str, float, float, int]


def calibrated_tests(profiles: Mapping[str, FeatureProfile], hists: Mapping[str, Histogram],
                     pool: PooledWindows, settings: DataDriftSettings, min_samples: int, *,
                     columnar: bool = True) -> list[Outcome]:
    """Every calibrated test of every feature at every scale it can run (O(bins) each).

    Rank tests run at a scale when the pooled present values reach ``min_samples``; the
    missing-rate test when the pooled events (present + missing) do. The numeric rank tests of
    all features and scales run as one numpy batch; so do (``columnar``, the default) the pooling,
    the missing-rate and the KS tests of the numeric features whose bins and pooled windows line
    up (every one, but for a feature whose bins changed): the same outcomes to the last bit, in the
    same order, as one feature at a time (a window of a 1,000-feature model runs ~8,000 of them).
    """
    per: dict[str, list[Outcome]] = {}
    rank = _RankRows([t for t in settings.calibrated_numeric if t != "ks"])
    columns: dict[tuple[int, int], list[str]] = {}
    for name, profile in profiles.items():
        h = hists[name]
        if profile.n + profile.missing == 0:
            continue
        if columnar and profile.kind == NUMERIC and len(profile.counts) == len(h.counts):
            depth = pool.aligned(name, len(h.counts))
            if depth is not None:
                columns.setdefault((len(h.counts), depth), []).append(name)
                continue
        per[name] = _feature_outcomes(name, profile, h, pool, settings, min_samples, rank)
    for (_, depth), names in columns.items():
        if len(names) >= MIN_COLUMNAR_FEATURES:
            per.update(_columnar_outcomes(names, depth, profiles, hists, pool, settings, min_samples, rank))
        else:
            per.update((n, _feature_outcomes(n, profiles[n], hists[n], pool, settings, min_samples, rank))
                       for n in names)
    rank.run(per)
    return [o for name in profiles if name in per for o in per[name]]


class _RankRows:
    """The numeric rank tests' (reference, pooled window) rows, run as one batch at the end."""

    def __init__(self, tests: list[str]) -> None:
        self.tests = tests
        self.blocks: list[tuple[Any, Any]] = []
        self.where: list[tuple[str, int]] = []

    def add(self, ref: Any, cur: Any, where: list[tuple[str, int]]) -> None:
        if self.tests and where:
            self.blocks.append((ref, cur))
            self.where += where

    def run(self, per: dict[str, list[Outcome]]) -> None:
        import numpy as np

        if not self.where:
            return
        width = max(np.shape(r)[-1] for r, _ in self.blocks)
        ref = np.zeros((len(self.where), width))
        cur = np.zeros((len(self.where), width))
        i = 0
        for r, c in self.blocks:
            r, c = np.atleast_2d(r), np.atleast_2d(c)
            ref[i:i + len(r), :r.shape[1]] = r
            cur[i:i + len(r), :c.shape[1]] = c
            i += len(r)
        z1, p1, z2, p2 = (a.tolist() for a in rank_tests_batch(ref, cur))
        for i, (name, k) in enumerate(self.where):
            out = per[name]
            if "wilcoxon" in self.tests:
                out.append((name, "wilcoxon", z1[i], p1[i], k))
            if "mood" in self.tests:
                out.append((name, "mood", z2[i], p2[i], k))


def _feature_outcomes(name: str, profile: FeatureProfile, h: Histogram, pool: PooledWindows,
                      settings: DataDriftSettings, min_samples: int, rank: _RankRows) -> list[Outcome]:
    """One feature's tests but the rank tests (handed to ``rank``), one scale at a time."""
    out: list[Outcome] = []
    for k in settings.scales:
        got = pool.pooled(name, h.counts, h.missing, k)
        if got is None:
            continue
        counts, missing = got
        present = sum(counts)
        if present + missing >= min_samples:
            diff, p = rate_test(profile.missing, profile.n + profile.missing, missing, present + missing)
            out.append((name, STAT_MISSING, diff, p, k))
        if present < min_samples or profile.n == 0:
            continue
        if profile.kind != NUMERIC:
            stat, p, _ = chi2_merged(profile.counts, counts)
            out.append((name, "chi2", stat, p, k))
            continue
        if "ks" in settings.calibrated_numeric:
            d, p = ks_grouped(profile.counts, counts)
            out.append((name, "ks", d, p, k))
        rank.add(profile.counts, counts, [(name, k)])
    return out


def _columnar_outcomes(names: list[str], depth: int, profiles: Mapping[str, FeatureProfile],
                       hists: Mapping[str, Histogram], pool: PooledWindows, settings: DataDriftSettings,
                       min_samples: int, rank: _RankRows) -> dict[str, list[Outcome]]:
    """:func:`_feature_outcomes` of numeric features with the same bins and ``depth`` pooled
    windows, as (features x bins) matrices: one numpy pass per scale."""
    import numpy as np

    ref = np.array([profiles[n].counts for n in names], dtype=float)
    cur = np.array([hists[n].counts for n in names], dtype=float)
    missing = np.array([hists[n].missing for n in names], dtype=np.int64)
    ref_n = np.array([profiles[n].n for n in names], dtype=np.int64)
    ref_missing = np.array([profiles[n].missing for n in names], dtype=np.int64)
    if depth:
        ring = np.array([[c for c, _ in pool.ring[n]] for n in names], dtype=float)
        ring_missing = np.array([[m for _, m in pool.ring[n]] for n in names], dtype=np.int64)
    ks = "ks" in settings.calibrated_numeric
    found: list[tuple[int, list[bool], list[float], list[float], list[bool], list[float], list[float]]] = []
    for k in settings.scales:
        if k - 1 > depth:
            continue
        if k == 1:
            counts, miss = cur, missing
        else:
            counts = cur + ring[:, depth - (k - 1):].sum(1)
            miss = missing + ring_missing[:, depth - (k - 1):].sum(1)
        present = counts.sum(1).astype(np.int64)
        rated = present + miss >= min_samples
        diff, p_rate = rate_test_batch(ref_missing, ref_n + ref_missing, miss, present + miss)
        tested = (present >= min_samples) & (ref_n > 0)
        d, p_ks = (a.tolist() for a in ks_grouped_batch(ref, counts)) if ks else ([], [])
        found.append((k, rated.tolist(), diff.tolist(), p_rate.tolist(), tested.tolist(), d, p_ks))
        rows = np.flatnonzero(tested)
        rank.add(ref[rows], counts[rows], [(names[i], k) for i in rows.tolist()])
    per: dict[str, list[Outcome]] = {}
    for i, name in enumerate(names):
        out = per[name] = []
        for k, rated_, diff_, p_rate_, tested_, d_, p_ks_ in found:
            if rated_[i]:
                out.append((name, STAT_MISSING, diff_[i], p_rate_[i], k))
            if ks and tested_[i]:
                out.append((name, "ks", d_[i], p_ks_[i], k))
    return per
