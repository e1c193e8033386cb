"""dashboard/health.py: one state per model from window rows (no Streamlit, no ClickHouse)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from driftline.dashboard import health

T0 = dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.timezone.utc)
WEEK_BUDGET = json.dumps({"false_verdicts": 1, "per": "week", "windows_per_period": 336,
                          "source": "observed traffic", "per_test_alpha": 0.0001})


def win(i: int, *, drift: bool | None = False, perf: bool | None = None, model: str = "m",
        drifted: tuple[tuple[Any, ...], ...] = (), segment_verdict: bool = False,
        budget: str = "", minutes: int = 30) -> dict[str, Any]:
    """One row of queries.overview_health: window ``i`` (``minutes`` long); ``None`` = no rows of
    that family in the window."""
    if drift and not drifted:
        drifted = (("data_drift", "age", 1, 0.3, "psi", 2.0),)
    return {"model": model, "window_start": T0 + dt.timedelta(minutes=minutes * i),
            "drifting": bool(drift), "has_drift": drift is not None,
            "degraded": bool(perf), "has_perf": perf is not None,
            "any_verdict": bool(drift) or segment_verdict, "has_drift_any": drift is not None,
            "drifted": list(drifted) if drift else [],
            "degraded_by": [("performance · model", ["accuracy"])] if perf else [],
            "budget": budget, "alpha": 1 / 336 if budget else 0.0}


def end_of(i: int, minutes: int = 30) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes * (i + 1))


def test_states_and_since_follow_the_latest_unbroken_run() -> None:
    rows = [win(i, drift=2 <= i < 5 or i >= 7, perf=False) for i in range(10)]
    h = health.model_health(rows, end_of(9))["m"]
    assert h.state == health.DRIFTING
    assert h.since == T0 + dt.timedelta(minutes=30 * 7) and not h.since_open
    assert h.rule.startswith("drifting: data/prediction drift verdict on 1 feature")
    quiet = health.model_health([win(i, drift=False, perf=False) for i in range(4)], end_of(3))["m"]
    assert quiet.state == health.HEALTHY and quiet.since == T0 and quiet.since_open


def test_degraded_wins_over_drifting_and_names_its_rule() -> None:
    rows = [win(i, drift=i >= 1, perf=i >= 3) for i in range(6)]
    h = health.model_health(rows, end_of(5))["m"]
    assert h.state == health.DEGRADED
    assert h.since == T0 + dt.timedelta(minutes=90)
    assert "performance · model (accuracy)" in h.rule


def test_a_family_keeps_its_latest_verdict_until_its_next_window() -> None:
    # Labels trail inputs: the last two windows have data rows only. The performance verdict of
    # window 3 still holds; the model is degraded, not healthy, and since window 3.
    rows = [win(i, drift=False, perf=(i == 3) if i <= 3 else None) for i in range(6)]
    h = health.model_health(rows, end_of(5))["m"]
    assert (h.state, h.since) == (health.DEGRADED, T0 + dt.timedelta(minutes=90))
    # Only one family: judged on it, and the rule says what is missing.
    only = health.model_health([win(i, drift=False, perf=None) for i in range(3)], end_of(2))["m"]
    assert only.state == health.HEALTHY and "no performance/concept (no labels?)" in only.rule
    assert health.model_health([win(0, drift=None, perf=None)], end_of(0))["m"].state == health.NO_OUTPUT


def test_top_features_rank_by_impact_then_by_statistic() -> None:
    drifted = (("data_drift", "b", 1, 0.10, "psi", 9.0), ("data_drift", "a", 1, 0.40, "psi", 1.5),
               ("data_drift", "c", 0, 0.0, "psi", 50.0), ("data_drift", "d", 1, 0.20, "ks", 3.0),
               ("multivariate.domain_classifier", "*", 0, 0.0, "roc_auc", 1.2),
               ("prediction_drift", "confidence", 0, 0.0, "mean", 0.0))
    h = health.model_health([win(0, drift=True, perf=False, drifted=drifted)], end_of(0))["m"]
    assert [f.feature for f in h.features] == ["a", "d", "b", "c", "confidence"]  # "*" is no feature
    assert [f.feature for f in h.top()] == ["a", "d", "b"] and h.ranked_by == "impact"
    by_stat = tuple((d, f, 0, 0.0, s, r) for d, f, _, _, s, r in drifted)
    h = health.model_health([win(0, drift=True, perf=False, drifted=by_stat)], end_of(0))["m"]
    assert [f.feature for f in h.top()] == ["c", "b", "d"] and h.ranked_by == "statistic"


def test_budget_use_counts_verdict_windows_of_any_segment_within_the_budgets_period() -> None:
    # 30-minute windows over 9 days: verdicts in windows 0-9 (more than a week before the end),
    # in all traffic at 400-402 and in a segment only at 420.
    n = 9 * 48
    rows = [win(i, drift=i < 10 or 400 <= i <= 402, perf=False, segment_verdict=i == 420,
                budget=WEEK_BUDGET) for i in range(n)]
    h = health.model_health(rows, end_of(n - 1))["m"]
    assert h.budget is not None and h.budget.false_verdicts == 1 and h.budget.per == "week"
    assert h.verdict_windows == 4 and h.counted == "the last 7 days"
    assert h.budget_use() == "budget 1 false alarm / week · 4 drift windows in the last 7 days"
    # A budget in windows (traffic unknown) counts the last windows_per_period windows.
    per_windows = json.dumps({"false_verdicts": 2, "per": "1000 windows", "windows_per_period": 5,
                              "source": "configured windows"})
    rows = [win(i, drift=i in (1, 6, 8), perf=False, budget=per_windows) for i in range(10)]
    h = health.model_health(rows, end_of(9))["m"]
    assert (h.verdict_windows, h.counted) == (2, "the last 5 windows")
    assert h.budget_use().startswith("budget 2 false alarms / 5 windows")


def test_an_unreadable_budget_is_left_out_not_raised() -> None:
    rows = [win(0, drift=True, perf=False, budget="{not json"), win(1, drift=True, budget='{"per": "week"}')]
    h = health.model_health(rows, end_of(1))["m"]
    assert h.budget is None and h.verdict_windows == 2
    assert h.budget_use() == "2 drift windows in the last 7 days"
