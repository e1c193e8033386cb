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
from driftline.detectors.rank_tests import chi2_merged, ks_grouped, rank_tests_batch, rate_test

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

    def clear(self) -> None:
        self.ring.clear()

    def get_state(self) -> dict[str, Any]:
        return {k: [[c, m] for c, m in v] for k, v in self.ring.items()}

    def set_state(self, state: Mapping[str, Any] | None) -> None:
        self.ring = {k: deque(((list(c), int(m)) for c, m in v), maxlen=self.depth)
                     for k, v in (state or {}).items()}


# One calibrated test result: feature, statistic, value, p-value, scale.
Outcome = tuple[str, str, float, float, int]


def calibrated_tests(profiles: Mapping[str, FeatureProfile], hists: Mapping[str, Histogram],
                     pool: PooledWindows, settings: DataDriftSettings, min_samples: int) -> list[Outcome]:
    """Every calibrated test of every feature at every scale it can run (O(bins) each).

    Rank tests run at a scale when the pooled present values reach ``min_samples``; the
    missing-rate test when the pooled events (present + missing) do. The numeric rank tests of
    all features and scales run as one numpy batch.
    """
    import numpy as np

    out: list[Outcome] = []
    rows_ref: list[Sequence[int]] = []
    rows_cur: list[list[int]] = []
    where: list[tuple[str, int]] = []
    numeric_rank = [t for t in settings.calibrated_numeric if t != "ks"]
    for name, profile in profiles.items():
        h = hists[name]
        if profile.n + profile.missing == 0:
            continue
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
            if numeric_rank:
                rows_ref.append(profile.counts)
                rows_cur.append(counts)
                where.append((name, k))
    if rows_ref:
        width = max(len(r) for r in rows_ref)
        ref = np.zeros((len(rows_ref), width))
        cur = np.zeros((len(rows_ref), width))
        for i, (r, c) in enumerate(zip(rows_ref, rows_cur)):
            ref[i, :len(r)] = r
            cur[i, :len(c)] = c
        z1, p1, z2, p2 = rank_tests_batch(ref, cur)
        for i, (name, k) in enumerate(where):
            if "wilcoxon" in numeric_rank:
                out.append((name, "wilcoxon", float(z1[i]), float(p1[i]), k))
            if "mood" in numeric_rank:
                out.append((name, "mood", float(z2[i]), float(p2[i]), k))
    return out
