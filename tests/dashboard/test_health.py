"""dashboard/health.py: one state per model from window rows (no Streamlit, no ClickHouse)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from driftline.dashboard import health

T0 = dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.timezone.utc)
WEEK_BUDGET = json.dumps({"false_verdicts": 1, "per": "week", "windows_per_period": 336,
                          "source": "observed traffic", "per_test_alpha": 0.0001})


def ms(i: int, minutes: int = 30) -> int:
    return int((T0 + dt.timedelta(minutes=minutes * i)).timestamp() * 1000)


def win(i: int, *, drift: bool | None = False, perf: bool | None = None, model: str = "m",
        segment_verdict: bool = False, budget: str = "") -> dict[str, Any]:
    """One row of detector_queries.overview_health: 30-minute window ``i``; ``None``: no rows of that
    family in the window."""
    return {"model": model, "ms": ms(i), "drifting": bool(drift), "has_drift": drift is not None,
            "degraded": bool(perf), "has_perf": perf is not None,
            "any_verdict": bool(drift) or segment_verdict, "budget": budget, "alpha": 1 / 336 if budget else 0.0}


def verdicts(rows: list[dict[str, Any]], drifted: tuple[tuple[Any, ...], ...] = (
        ("data_drift", "age", 1, 0.3, "psi", 2.0),)) -> list[dict[str, Any]]:
    """The rows of detector_queries.overview_verdicts for ``rows``' windows with a verdict."""
    out = []
    for r in rows:
        if r["drifting"]:
            out += [{"model": r["model"], "ms": r["ms"], "detector": d, "feature": f, "fam": 1,
                     "has_impact": hi, "impact": imp, "statistic_": st, "ratio": ratio, "crossed": [st]}
                    for d, f, hi, imp, st, ratio in drifted]
        if r["degraded"]:
            out.append({"model": r["model"], "ms": r["ms"], "detector": "performance", "feature": "model",
                        "fam": 2, "has_impact": 0, "impact": 0.0, "statistic_": "accuracy", "ratio": 1.1,
                        "crossed": ["accuracy"]})
    return out


def health_of(rows: list[dict[str, Any]], uses: list[dict[str, Any]] | None = None,
              **kw: Any) -> health.ModelHealth:
    return health.model_health(rows, verdicts(rows, **kw), uses)["m"]


def test_states_and_since_follow_the_latest_unbroken_run() -> None:
    h = health_of([win(i, drift=2 <= i < 5 or i >= 7, perf=False) for i in range(10)])
    assert h.state == health.DRIFTING
    assert h.since == T0 + dt.timedelta(minutes=30 * 7) and not h.since_open
    assert h.rule.startswith("drifting: data/prediction drift verdict on 1 feature")
    quiet = health_of([win(i, drift=False, perf=False) for i in range(4)])
    assert quiet.state == health.HEALTHY and quiet.since == T0 and quiet.since_open


def test_degraded_wins_over_drifting_and_names_its_rule() -> None:
    h = health_of([win(i, drift=i >= 1, perf=i >= 3) for i in range(6)])
    assert h.state == health.DEGRADED
    assert h.since == T0 + dt.timedelta(minutes=90)
    assert "performance · model (accuracy)" in h.rule
    assert [f.feature for f in h.top()] == ["age"]  # the drift behind it is still listed


def test_a_family_keeps_its_latest_verdict_until_its_next_window() -> None:
    # Labels trail inputs: the last two windows have data rows only. The performance verdict of
    # window 3 still holds; the model is degraded, not healthy, and since window 3.
    rows = [win(i, drift=False, perf=(i == 3) if i <= 3 else None) for i in range(6)]
    h = health_of(rows)
    assert (h.state, h.since) == (health.DEGRADED, T0 + dt.timedelta(minutes=90))
    assert health.verdicts_since(rows) == T0 + dt.timedelta(minutes=90)  # the older latest window
    assert health.verdicts_since([win(i, drift=i == 0, perf=False) for i in range(3)]) is None  # all quiet now
    # Only one family: judged on it, and the rule says what is missing.
    only = health_of([win(i, drift=False, perf=None) for i in range(3)])
    assert only.state == health.HEALTHY and "no performance/concept (no labels?)" in only.rule
    assert health_of([win(0, drift=None, perf=None)]).state == health.NO_OUTPUT
    assert health.verdicts_since([win(0, drift=None, perf=None)]) is None


def test_top_features_rank_by_impact_then_by_statistic() -> None:
    drifted = (("data_drift", "b", 1, 0.10, "psi", 9.0), ("data_drift", "a", 1, 0.40, "psi", 1.5),
               ("data_drift", "c", 0, 0.0, "psi", 50.0), ("data_drift", "d", 1, 0.20, "ks", 3.0),
               ("multivariate.domain_classifier", "*", 0, 0.0, "roc_auc", 1.2),
               ("prediction_drift", "confidence", 0, 0.0, "mean", 0.0))
    h = health_of([win(0, drift=True, perf=False)], drifted=drifted)
    assert [f.feature for f in h.features] == ["a", "d", "b", "c", "confidence"]  # "*" is no feature
    assert [f.feature for f in h.top()] == ["a", "d", "b"] and h.ranked_by == "impact"
    by_stat = tuple((d, f, 0, 0.0, s, r) for d, f, _, _, s, r in drifted)
    h = health_of([win(0, drift=True, perf=False)], drifted=by_stat)
    assert [f.feature for f in h.top()] == ["c", "b", "d"] and h.ranked_by == "statistic"
    # Only the latest drift window's features count, not an earlier window's.
    rows = [win(0, drift=True, perf=False), win(1, drift=True, perf=False)]
    old = verdicts(rows[:1], drifted=(("data_drift", "old", 1, 9.0, "psi", 9.0),))
    h = health.model_health(rows, old + verdicts(rows[1:]), None)["m"]
    assert [f.feature for f in h.top()] == ["age"]


def test_budget_use_is_counted_over_the_budgets_own_period() -> None:
    uses = [{"model": "m", "hour": 1, "day": 2, "week": 4}]
    rows = [win(i, drift=i == 3, perf=False, budget=WEEK_BUDGET) for i in range(5)]
    h = health_of(rows, uses)
    assert h.budget is not None and h.budget.false_verdicts == 1 and h.budget.per == "week"
    assert (h.verdict_windows, h.counted) == (4, "the last 7 days")
    assert h.budget_use() == "budget 1 false alarm / week · 4 drift windows in the last 7 days"
    per_day = json.dumps({"false_verdicts": 3, "per": "day", "windows_per_period": 48})
    h = health_of([win(0, drift=False, perf=False, budget=per_day)], uses)
    assert h.budget_use() == "budget 3 false alarms / day · 2 drift windows in the last 24 hours"
    # A budget in windows (traffic unknown) counts the last windows_per_period windows, any segment.
    per_windows = json.dumps({"false_verdicts": 2, "per": "1000 windows", "windows_per_period": 5,
                              "source": "configured windows"})
    rows = [win(i, drift=i in (1, 6), segment_verdict=i == 8, perf=False, budget=per_windows)
            for i in range(10)]
    h = health_of(rows, uses)
    assert (h.verdict_windows, h.counted) == (2, "the last 5 windows")
    assert h.budget_use().startswith("budget 2 false alarms / 5 windows")


def test_an_unreadable_budget_is_left_out_not_raised() -> None:
    rows = [win(0, drift=True, perf=False, budget="{not json"), win(1, drift=True, budget='{"per": "week"}')]
    h = health_of(rows, [{"model": "m", "hour": 0, "day": 2, "week": 2}])
    assert h.budget is None and h.verdict_windows == 2
    assert h.budget_use() == "2 drift windows in the last 7 days"


def test_a_drifted_feature_says_what_ranks_it() -> None:
    scored, unscored = health.top_features([("data_drift", "age", 1, 0.123, "psi", 2.0),
                                            ("data_drift", "zip", 0, 0.0, "ks", 40.0)])
    assert (scored.words(), unscored.words()) == ("impact 0.12", "ks 40× past its threshold")
    assert health.DriftedFeature("data_drift", "x", None).words() == ""
