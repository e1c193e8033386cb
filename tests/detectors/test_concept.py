"""Concept drift with stable inputs, performance metrics, and the label join horizon."""

from __future__ import annotations

import random

import pytest

from driftline.detectors.concept import PerformanceDetector
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from tests.detectors.detector_streams import label, prediction, uid

WINDOW = 1000
CHANGE = 8000


def _engine(methods=("adwin", "page_hinkley", "kswin", "ddm"), **concept) -> DetectorEngine:
    return DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": WINDOW}, "min_samples": 200,
        "concept": {"detectors": list(methods), "label_horizon_s": 3600, **concept},
        "data_drift": {"enabled": False}, "quality": {"enabled": False},
        "prediction_drift": {"enabled": False}}))


def _concept_stream(eng: DetectorEngine, n: int = 16_000, seed: int = 0) -> None:
    """x ~ U(-1, 1) always; the model predicts y = (x > 0) with 95% accuracy. After CHANGE the
    truth flips for x in (0.5, 1): the inputs look the same, the labels do not."""
    rng = random.Random(seed)
    for i in range(n):
        x = rng.uniform(-1, 1)
        p1 = min(0.99, max(0.01, 0.5 + x))
        pred = {"1": p1, "0": 1 - p1}
        eng.observe_prediction(prediction(i, {"x": x}, pred, t=i))
        truth = int(x > 0)
        if i >= CHANGE and x > 0.5:
            truth = 1 - truth
        if rng.random() < 0.05:
            truth = 1 - truth
        eng.observe_label(label(i, uid(i), truth, t=i + 30))


def test_concept_change_with_stable_inputs_is_detected_after_not_before():
    eng = _engine()
    _concept_stream(eng)
    rows = eng.poll()
    for method in ("adwin", "ddm", "page_hinkley", "kswin"):
        det_rows = [r for r in rows if r.detector == f"concept.{method}"]
        positions = [p for r in det_rows for p in __import__("json").loads(r.details)["positions"]]
        if method in ("adwin", "ddm"):  # the defaults: no alarm before, an alarm soon after
            assert positions and min(positions) > CHANGE, (method, positions)
            assert min(positions) < CHANGE + 2000, (method, positions)
        else:
            assert any(p > CHANGE for p in positions), (method, positions)
    acc = [r for r in rows if r.detector == "performance" and r.statistic == "accuracy"]
    assert len(acc) == 16
    assert all(not r.drift for r in acc[: CHANGE // WINDOW]) and all(r.drift for r in acc[CHANGE // WINDOW:])
    assert {r.statistic for r in rows if r.detector == "performance"} == {"accuracy", "f1", "roc_auc"}
    assert eng.counts("m")["labels_joined"] == 16_000


def test_late_labels_join_within_the_horizon_and_drop_past_it():
    eng = _engine(("adwin",))
    for i in range(300):
        eng.observe_prediction(prediction(i, {"x": 0.0}, 1, t=i))
    # within the horizon (3600 s), even out of order
    for i in range(0, 100):
        eng.observe_label(label(i, uid(i), 1, t=i + 3500))
    # past the horizon while the prediction is still pending
    for i in range(100, 150):
        eng.observe_label(label(i, uid(i), 1, t=i + 4000))
    # a label before its prediction waits for it
    eng.observe_label(label(999, uid(1000), 0, t=300))
    eng.observe_prediction(prediction(1000, {"x": 0.0}, 1, t=301))
    # time passes: the remaining predictions expire unlabelled
    eng.observe_prediction(prediction(2000, {"x": 0.0}, 1, t=20_000))
    eng.observe_label(label(200, uid(200), 1, t=20_001))
    c = eng.counts("m")
    assert c["labels_joined"] == 101
    # 100..149 and 200 are dropped: "late" when the prediction was still pending, else they
    # wait for a prediction that has already expired and expire themselves.
    assert c["predictions_unlabelled"] >= 150
    eng.observe_prediction(prediction(3000, {"x": 0.0}, 1, t=30_000))
    c = eng.counts("m")
    assert c["labels_late"] >= 1 and c["labels_late"] + c["labels_expired"] == 51
    assert c["labels_joined"] == 101


def test_regression_metrics_and_ddm_is_skipped_for_regressors():
    eng = _engine(("adwin", "ddm"), task="regression")
    rng = random.Random(1)
    for i in range(4000):
        y = rng.gauss(0, 1)
        err = rng.gauss(0, 0.1 if i < 2000 else 1.0)
        eng.observe_prediction(prediction(i, {"x": y}, y + err, t=i))
        eng.observe_label(label(i, uid(i), y, t=i + 1))
    rows = eng.poll()
    mae = [r for r in rows if r.statistic == "mae"]
    assert [r.drift for r in mae] == [False, False, True, True]
    assert not [r for r in rows if r.detector == "concept.ddm"]
    adwin = [r for r in rows if r.detector == "concept.adwin"]
    assert [r.drift for r in adwin][:2] == [False, False] and any(r.drift for r in adwin[2:])


def test_performance_metrics_values():
    det = PerformanceDetector("classification", min_samples=1)
    pairs = [({"1": 0.9, "0": 0.1}, 1), ({"1": 0.8, "0": 0.2}, 0), ({"1": 0.3, "0": 0.7}, 1),
             ({"1": 0.1, "0": 0.9}, 0)]
    for p, y in pairs:
        det.update(p, y)
    m = {r.statistic: r.value for r in det.close_window()}
    assert m["accuracy"] == 0.5
    assert m["f1"] == pytest.approx(0.5)  # tp=1, fp=1, fn=1
    assert m["roc_auc"] == pytest.approx(0.75)  # sklearn.roc_auc_score([1,0,1,0],[.9,.8,.3,.1])
