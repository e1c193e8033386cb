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


_DRIFT_STATS = ("missing", "ks", "wilcoxon", "mood", "psi", "wasserstein", "jensen_shannon")
_QUALITY_STATS = ("missing_rate", "type_violation_rate", "out_of_range_rate")


def _window_rows(model: str, scale: float = 1.0) -> list[MetricRow]:
    """One closed window of a 20-feature model as the engine writes it (the statistics each
    detector gives a feature, summary rows), with f00-f02 drifting."""
    def row(detector: str, feature: str, statistic: str, value: float, drift: bool) -> MetricRow:
        return MetricRow(model, "v1", detector, feature, "", T, T, statistic, value, None, 0.1, drift, 2000, 200,
                         "{}", drift)

    out = []
    for k in range(20):
        drift = k < 3
        out += [row("data_drift", f"f{k:02d}", s, 0.5 if drift else 0.01, drift) for s in _DRIFT_STATS]
        out += [row("quality", f"f{k:02d}", s, 0.0, False) for s in _QUALITY_STATS]
        if drift:
            out.append(row("data_drift", f"f{k:02d}", STAT_IMPACT, scale * (0.3 - k / 100), True))
    out += [row("data_drift", "*", "drifted_share", 0.15, True), row("data_drift", "*", "alarm_budget", 0.01, False),
            row("multivariate.pca", "*", "reconstruction_error_z", 1.0, False)]
    out += [row("prediction_drift", o, s, 0.01, False) for o in ("label", "confidence", "entropy")
            for s in ("missing", "psi", "jensen_shannon")]
    return out


def _series(reg: CollectorRegistry) -> list[str]:
    from prometheus_client import generate_latest

    return [line for line in generate_latest(reg).decode().splitlines() if line and not line.startswith("#")]


def test_metrics_of_1000_models_with_20_features_stay_under_10k_series():
    reg = CollectorRegistry()
    m = EngineMetrics(reg, feature_detail_top=30)
    for i in range(1000):
        model = f"model-{i:04d}"
        m.event(model, "prediction", 600)
        m.event(model, "label", 300)
        m.label(model, "joined")
        m.health(model, pending=12)
        # model-0007's drifting features have the highest impact: they lead the top N.
        m.window(model, _window_rows(model, scale=10.0 if i == 7 else 1.0))
    series = _series(reg)
    assert len(series) < 10_000, len(series)
    per_feature = [s for s in series if s.startswith("driftline_drift_")]
    groups = {s.split("{", 1)[1].split("statistic=")[0] for s in per_feature}
    assert len(groups) == 30  # (model, version, detector, feature, segment)
    # Drifting groups first, by impact: model-0007's three, then 27 others, all drifting.
    assert sum('model="model-0007"' in g for g in groups) == 3
    assert all('detector="data_drift"' in g and any(f'feature="f0{k}"' in g for k in range(3)) for g in groups)
    # The health series of every model are there, whatever the top N shows (one scrape, parsed).
    from prometheus_client.parser import text_string_to_metric_families

    got = {(x.name, tuple(sorted(x.labels.items()))): x.value
           for fam in text_string_to_metric_families("\n".join(series) + "\n") for x in fam.samples}

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    assert value("driftline_model_drifting_verdicts", model="model-0999") == 3
    assert value("driftline_model_state", model="model-0999", state="drifting") == 1.0
    assert value("driftline_detector_events_total", model="model-0999", type="label") == 300
    assert value("driftline_detector_windows_total", model="model-0999") == 1
    assert value("driftline_model_drift_windows_total", model="model-0999") == 1
    assert value("driftline_model_pending_predictions", model="model-0999") == 12
    assert value("driftline_model_alarm_budget", model="model-0999") == 0.01
    assert value("driftline_detector_labels_total", result="joined") == 1000


def test_every_feature_is_exported_on_opt_in_and_none_with_zero():
    rows = _window_rows("m")
    per_feature = {(r.model_version, r.detector, r.feature, r.segment, r.statistic) for r in rows}
    for top, want in ((None, 3 * len(per_feature)), (0, 0)):
        reg = CollectorRegistry()
        EngineMetrics(reg, feature_detail_top=top).window("m", rows)
        assert sum(s.startswith("driftline_drift_") for s in _series(reg)) == want


def test_model_state_and_reference_missing_series():
    reg = CollectorRegistry()
    m = EngineMetrics(reg, feature_detail_top=5)

    def state(model: str) -> list[str]:
        return [s for s in ("warming_up", "ok", "drifting", "no_reference")
                if reg.get_sample_value("driftline_model_state", {"model": model, "state": s}) == 1.0]

    m.event("m", "prediction")
    assert state("m") == ["warming_up"]
    m.health("m", reference_missing=True)
    assert state("m") == ["no_reference"]
    assert reg.get_sample_value("driftline_model_reference_missing", {"model": "m"}) == 1.0
    m.health("m", reference_missing=False)
    assert reg.get_sample_value("driftline_model_reference_missing", {"model": "m"}) is None
    m.window("m", [_row("x", "wasserstein", False)])
    assert state("m") == ["ok"]
    m.window("m", [_row("x", "wasserstein", True, window=1)])
    assert state("m") == ["drifting"]
    m.drop("m")
    assert state("m") == [] and reg.get_sample_value("driftline_detector_events_total",
                                                     {"model": "m", "type": "prediction"}) is None
