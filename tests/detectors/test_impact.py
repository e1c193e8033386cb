"""detectors/impact.py: importance from the reference, impact rows for exactly the drifted
features, the dataset row's list by impact, old references, the configured override."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftline.detectors.base import STAT_DRIFTED_SHARE, STAT_IMPACT, result_to_row
from driftline.detectors.config import DataDriftSettings, DetectorsConfig
from driftline.detectors.drift import DataDriftDetector, PredictionDriftDetector
from driftline.detectors.impact import (
    FROM_CONFIG, FROM_LABEL, FROM_PREDICTION, FROM_UNKNOWN, estimate_importance,
)
from driftline.detectors.reference import Reference, from_dataframe, from_events
from driftline.sdk.errors import ConfigError

N_REF = 3000


def _frame(seed: int) -> pd.DataFrame:
    """x drives the prediction, plan a little, noise and tag not at all (tag is categorical)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=N_REF), "noise": rng.normal(size=N_REF),
                       "plan": rng.choice(["a", "b", "c"], N_REF),
                       "tag": rng.choice(list("pqrstuvw"), N_REF)})
    score = 2 * df.x + 0.8 * (df.plan == "a") + rng.normal(scale=0.3, size=N_REF)
    df["label"] = np.where(score > 0.4, "yes", "no")
    df["pred"] = [{"yes": float(p), "no": 1 - float(p)} for p in 1 / (1 + np.exp(-score))]
    df["amount"] = 3 * df.x + 0.1 * rng.normal(size=N_REF)  # a regressor's output
    return df


@pytest.mark.parametrize("seed", range(5))
def test_importance_ranks_what_the_prediction_depends_on_above_noise(seed):
    ref = from_dataframe(_frame(seed), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    imp = {k: p.importance for k, p in ref.features.items()}
    assert {p.importance_from for p in ref.features.values()} == {FROM_PREDICTION}
    assert imp["x"] > 0.3 and imp["x"] > imp["plan"] > max(imp["noise"], imp["tag"])
    assert imp["noise"] < 0.01 and imp["tag"] < 0.01  # bias-corrected: noise is ~0, not ~bins/N


def test_importance_of_a_regressor_and_from_labels():
    df = _frame(1)
    reg = from_dataframe(df, "m", "v1", prediction_column="amount", exclude=["label", "pred"])
    assert reg.features["x"].importance > 0.5 > 0.01 > reg.features["noise"].importance
    lab = from_dataframe(df, "m", "v1", label_column="label", exclude=["pred", "amount"])
    assert "label" not in lab.features
    assert {p.importance_from for p in lab.features.values()} == {FROM_LABEL}
    assert lab.features["x"].importance > lab.features["plan"].importance > 0.01 > lab.features["noise"].importance


def test_events_reference_estimates_importance_and_a_file_without_predictions_does_not():
    df = _frame(2)
    events = [{"features": {"x": x, "noise": n}, "prediction": {"yes": p["yes"], "no": p["no"]}}
              for x, n, p in zip(df.x, df.noise, df.pred)]
    ref = from_events(events, "m", "v1")
    assert ref.features["x"].importance > 0.3 and ref.features["noise"].importance < 0.01
    bare = from_dataframe(df[["x", "noise"]], "m", "v1")
    assert all(p.importance is None and p.importance_from == "" for p in bare.features.values())


def test_no_importance_when_the_prediction_is_constant():
    x = np.arange(500, dtype=float)
    assert estimate_importance({}, {}, ["yes"] * 500) == {}
    ref = from_dataframe(pd.DataFrame({"x": x, "p": ["yes"] * 500}), "m", "v1", prediction_column="p")
    assert ref.features["x"].importance is None


def _drifting_window(det: DataDriftDetector, rng: np.random.Generator, shifted: dict[str, float]) -> tuple:
    for _ in range(1000):
        det.update({"x": rng.normal(shifted.get("x", 0.0)), "noise": rng.normal(shifted.get("noise", 0.0)),
                    "plan": rng.choice(["a", "b", "c"], p=[0.6, 0.2, 0.2] if "plan" in shifted else None),
                    "tag": str(rng.choice(list("pqrstuvw")))})
    return det.close_window()


def test_impact_rows_exist_exactly_for_drifted_features_and_rank_the_dataset_row():
    ref = from_dataframe(_frame(3), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    det = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=100)
    rng = np.random.default_rng(7)
    shifts = [{}, {"noise": 1.0}, {"x": 0.5, "noise": 1.0}, {"x": 0.5, "noise": 1.0, "plan": 1},
              {}, {"plan": 1}]
    windows_with_impact = 0
    for shifted in shifts:
        results = _drifting_window(det, rng, shifted)
        drifted = {f for f, v in det.verdicts.items() if v and f != "*"}
        impact = {r.feature: r for r in results if r.statistic == STAT_IMPACT}
        assert set(impact) == drifted, shifted  # one row per drifted feature, none for the others
        assert drifted >= set(shifted)  # these shifts are large: each one is drifted
        windows_with_impact += bool(impact)
        for r in impact.values():
            d = dict(r.details)
            assert r.drift is True and r.exceeded is False and r.threshold is None
            assert d["importance"] == ref.features[r.feature].importance
            assert r.value == pytest.approx(d["importance"] * d["magnitude"])
            assert 0 < d["magnitude"] <= 1
        by_rank = sorted(impact, key=lambda f: dict(impact[f].details)["rank"])
        assert [dict(impact[f].details)["rank"] for f in by_rank] == list(range(1, len(impact) + 1))
        assert [impact[f].value for f in by_rank] == sorted((r.value for r in impact.values()), reverse=True)
        (share,) = [r for r in results if r.statistic == STAT_DRIFTED_SHARE]
        assert list(dict(share.details)["drifted"]) == by_rank
    # Windows 2-6: the quiet fifth window is still judged drifted, pooled with the shifted ones
    # before it (the calibrated verdict's 2-, 4- and 8-window scales), and its impact rows say so.
    assert windows_with_impact == 5
    # x moves less than noise, but the prediction depends on x: x ranks first.
    det2 = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=100)
    res = _drifting_window(det2, np.random.default_rng(8), {"x": 0.5, "noise": 1.0})
    ranked = [r.feature for r in sorted((r for r in res if r.statistic == STAT_IMPACT), key=lambda r: -r.value)]
    assert ranked == ["x", "noise"]
    noise = next(r for r in res if r.statistic == STAT_IMPACT and r.feature == "noise")
    x = next(r for r in res if r.statistic == STAT_IMPACT and r.feature == "x")
    assert dict(noise.details)["magnitude"] > dict(x.details)["magnitude"]  # by magnitude alone, noise led


def test_impact_row_details_are_what_the_dashboard_reads():
    ref = from_dataframe(_frame(4), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    det = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=100)
    res = _drifting_window(det, np.random.default_rng(1), {"x": 1.0})
    (row,) = [result_to_row(r, model="m", model_version="v1", segment="", window_start=None,  # type: ignore[arg-type]
                            window_end=None) for r in res if r.statistic == STAT_IMPACT]  # type: ignore[arg-type]
    d = json.loads(row.details)
    assert row.feature == "x" and row.drift and not row.exceeded
    assert set(d) == {"importance", "importance_from", "magnitude", "rank", "verdict"}
    assert d["rank"] == 1 and d["importance_from"] == FROM_PREDICTION and d["verdict"] is False


def test_prediction_drift_writes_no_impact_rows():
    ref = from_dataframe(_frame(5), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    det = PredictionDriftDetector(ref.outputs, DataDriftSettings(), min_samples=100)
    for c in np.random.default_rng(0).uniform(0.9, 1.0, 1000):
        det.update({"prediction": "yes", "confidence": float(c), "entropy": 0.1})
    res = det.close_window()
    assert det.drift_detected and not [r for r in res if r.statistic == STAT_IMPACT]


def test_old_stored_reference_loads_and_weighs_features_equally():
    ref = from_dataframe(_frame(6), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    doc = json.loads(ref.to_json())
    for p in doc["features"]:  # as stored before importance existed
        del p["importance"], p["importance_from"]
    old = Reference.from_json(json.dumps(doc))
    assert all(p.importance is None for p in old.features.values())
    assert Reference.from_json(ref.to_json()).features == ref.features  # new ones keep it
    det = DataDriftDetector(old.features, DataDriftSettings(), min_samples=100)
    res = _drifting_window(det, np.random.default_rng(2), {"x": 0.5, "noise": 1.0})
    impact = {r.feature: dict(r.details) | {"value": r.value} for r in res if r.statistic == STAT_IMPACT}
    assert set(impact) == {"x", "noise"}
    for d in impact.values():
        assert d["importance"] == 1.0 and d["importance_from"] == FROM_UNKNOWN
        assert d["value"] == d["magnitude"]  # equal weights: impact is the magnitude
    assert impact["noise"]["rank"] == 1  # the bigger move leads when nothing is known


def test_configured_importance_overrides_the_estimate():
    ref = from_dataframe(_frame(7), "m", "v1", prediction_column="pred", exclude=["label", "amount"])
    s = DetectorsConfig.from_mapping({"model": "m", "data_drift": {"importance": {"noise": 2.0}}}).models[0].data_drift
    det = DataDriftDetector(ref.features, s, min_samples=100)
    res = _drifting_window(det, np.random.default_rng(3), {"x": 0.5, "noise": 1.0})
    impact = {r.feature: dict(r.details) for r in res if r.statistic == STAT_IMPACT}
    assert impact["noise"]["importance"] == 2.0 and impact["x"]["importance"] == 0.0  # not named: 0
    assert {d["importance_from"] for d in impact.values()} == {FROM_CONFIG}
    assert impact["noise"]["rank"] == 1
    with pytest.raises(ConfigError, match="data_drift.importance.noise"):
        DetectorsConfig.from_mapping({"model": "m", "data_drift": {"importance": {"noise": -1}}})

