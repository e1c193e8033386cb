"""detectors/metrics.py: a feature's impact series lives only while the feature drifts."""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry

from driftline.detectors.base import STAT_IMPACT, MetricRow
from driftline.detectors.metrics import EngineMetrics

T = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _row(feature: str, statistic: str, drift: bool, segment: str = "", value: float = 0.3,
         window: int = 0) -> MetricRow:
    start = T + dt.timedelta(minutes=10 * window)
    return MetricRow("m", "v1", "data_drift", feature, segment, start, start, statistic, value, None, None,
                     drift, 1000, 1000, "{}")


def _labels(feature: str, statistic: str, segment: str = "") -> dict[str, str]:
    return {"model": "m", "version": "v1", "detector": "data_drift", "feature": feature, "segment": segment,
            "statistic": statistic}


def test_impact_series_are_removed_when_the_feature_stops_drifting():
    reg = CollectorRegistry()
    m = EngineMetrics(reg)
    m.rows([_row("x", "wasserstein", True), _row("x", STAT_IMPACT, True, value=0.12),
            _row("y", "wasserstein", True), _row("y", STAT_IMPACT, True, value=0.05),
            _row("x", STAT_IMPACT, True, segment="region=eu")])
    assert reg.get_sample_value("driftline_drift_statistic", _labels("x", STAT_IMPACT)) == 0.12
    assert reg.get_sample_value("driftline_drift_detected", _labels("y", STAT_IMPACT)) == 1.0
    # Next window: x stopped drifting (no impact row), y still drifts.
    m.rows([_row("x", "wasserstein", False), _row("y", "wasserstein", True), _row("y", STAT_IMPACT, True, value=0.07)])
    for name in ("driftline_drift_statistic", "driftline_drift_detected", "driftline_drift_exceeded"):
        assert reg.get_sample_value(name, _labels("x", STAT_IMPACT)) is None
    assert reg.get_sample_value("driftline_drift_statistic", _labels("y", STAT_IMPACT)) == 0.07
    assert reg.get_sample_value("driftline_drift_detected", _labels("x", "wasserstein")) == 0.0
    # Another segment's window did not close: its series stays.
    assert reg.get_sample_value("driftline_drift_statistic", _labels("x", STAT_IMPACT, "region=eu")) == 0.3
    # A feature that drifts again gets its series back.
    m.rows([_row("x", STAT_IMPACT, True, value=0.2)])
    assert reg.get_sample_value("driftline_drift_detected", _labels("x", STAT_IMPACT)) == 1.0
    assert reg.get_sample_value("driftline_drift_statistic", _labels("y", STAT_IMPACT)) is None


def test_rows_of_several_windows_keep_the_last_windows_impact_series():
    reg = CollectorRegistry()
    m = EngineMetrics(reg)
    m.rows([_row("x", STAT_IMPACT, True, window=0), _row("y", STAT_IMPACT, True, window=0)])
    # One batch of two windows (a replay): x drifted in the first only, y in both.
    m.rows([_row("x", STAT_IMPACT, True, window=1), _row("y", STAT_IMPACT, True, window=1),
            _row("x", "wasserstein", False, window=2), _row("y", STAT_IMPACT, True, window=2, value=0.4)])
    assert reg.get_sample_value("driftline_drift_detected", _labels("x", STAT_IMPACT)) is None
    assert reg.get_sample_value("driftline_drift_statistic", _labels("y", STAT_IMPACT)) == 0.4
