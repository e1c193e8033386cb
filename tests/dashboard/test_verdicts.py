"""dashboard/verdicts.py: the short flag list, from verdict and evidence rows (no ClickHouse)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from driftline.dashboard import verdicts
from driftline.dashboard.data import DashboardSettings
from driftline.dashboard.ui import Ctx
from driftline.dashboard.view import View

T0 = dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.timezone.utc)
FEATURES = [f"f{i:02d}" for i in range(13)]


def _windows(n: int, drifted_from: int) -> pd.DataFrame:
    """data_drift and performance windows of 30 minutes; every feature (and the model's accuracy)
    drifts from window ``drifted_from`` on, f00 from the window after."""
    rows = []
    for i in range(n):
        t = pd.Timestamp(T0 + dt.timedelta(minutes=30 * i))
        feats = [f for f in FEATURES if i >= drifted_from + (f == "f00")]
        rows.append({"detector": "data_drift", "t": t, "drift": bool(feats), "features": feats})
        rows.append({"detector": "performance", "t": t, "drift": i >= drifted_from,
                     "features": ["model"] if i >= drifted_from else []})
    return pd.DataFrame(rows)


def _evidence() -> pd.DataFrame:
    rows = [{"detector": "data_drift", "feature": f, "has_impact": 1, "impact": 0.01 * k, "magnitude": 0.5,
             "statistic_": "psi", "stat_value": 0.4, "stat_threshold": 0.2, "stat_p_value": float("nan"),
             "ratio": 2.0} for k, f in enumerate(FEATURES)]
    rows.append({"detector": "performance", "feature": "model", "has_impact": 0, "impact": 0.0,
                 "magnitude": 0.0, "statistic_": "accuracy", "stat_value": 0.7, "stat_threshold": 0.855,
                 "stat_p_value": float("nan"), "ratio": 0.855 / 0.7})
    return pd.DataFrame(rows)


def test_flags_rank_by_impact_then_distance_and_stop_at_ten_with_how_many_more() -> None:
    flags = verdicts.current_flags(_windows(6, 2), _evidence())
    assert len(flags) == 14
    # impact-scored features first, the highest impact first; then the unscored performance flag
    assert [f.feature for f in flags[:3]] == ["f12", "f11", "f10"]
    assert flags[-1].feature == "model" and flags[-1].measure == "accuracy 0.7 (threshold 0.855)"
    f00 = next(f for f in flags if f.feature == "f00")
    assert (f00.since, f00.windows) == (T0 + dt.timedelta(minutes=90), 3)
    ctx = Ctx(DashboardSettings(), View("m", T0, T0 + dt.timedelta(hours=3)), T0, ("m",))
    lines = verdicts.flag_lines(ctx, flags)
    assert len(lines) == verdicts.MAX_FLAGS + 1 == 11
    assert lines[-1] == "- … and 4 more"
    assert lines[0].startswith("- **f12** · data_drift · since 2026-11-24 01:00 (4 windows) · "
                               "impact 0.12 (magnitude 0.50) · [evidence](/?page=model&model=m&feature=f12&from=")
    assert "from=2026-11-24T01%3A00%3A00Z" in lines[0]  # the drill-down opens at the run's start


def test_a_test_statistic_reads_as_its_p_value_and_unmeasured_flags_still_list() -> None:
    ev = pd.DataFrame([{"detector": "data_drift", "feature": "f01", "has_impact": 0, "impact": 0.0,
                        "magnitude": 0.0, "statistic_": "ks", "stat_value": 0.3, "stat_threshold": 0.05,
                        "stat_p_value": 1e-6, "ratio": 5e4}])
    flags = verdicts.current_flags(_windows(3, 1), ev)
    by = {f.feature: f for f in flags}
    assert by["f01"].measure == "ks p=1e-06 (level 0.05)" and flags[0].feature == "f01"
    assert by["f02"].measure == "" and by["model"].measure == ""
    ctx = Ctx(DashboardSettings(), View("m", T0, T0 + dt.timedelta(hours=3)), T0, ("m",))
    perf = verdicts.flag_lines(ctx, [by["model"]], links=True)[0]
    assert perf.startswith("- **model** · performance · since 2026-11-24 00:30 (2 windows) · [evidence](/?page=performance&")
    assert "evidence" not in verdicts.flag_lines(ctx, [by["model"]], links=False)[0]
