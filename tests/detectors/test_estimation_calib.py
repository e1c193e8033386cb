"""CBPE's calibrator rule (detectors/estimation_calib.py) on an underconfident multiclass model:
the case where the held-out Brier test alone kept the miscalibrated scores (bench/README.md,
"Over many seeds": scikit-learn's digits on 5 of 10 references)."""

from __future__ import annotations

import numpy as np

from driftline.detectors.estimation import CBPE
from driftline.detectors.estimation_calib import Calibrator, choose, fit_calibrators, row_losses, held_out, top_class_z

K = 10
CLASSES = [f"c{c}" for c in range(K)]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def stream(rng: np.random.Generator, n: int, temperature: float):
    """True class probabilities softmax(z) and the labels drawn from them; the model's scores are
    softmax(z / temperature): calibrated at 1, underconfident above."""
    z = rng.normal(size=(n, K)) * 2.5
    truth = softmax(z)
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)[:, :-1]).sum(axis=1)
    return softmax(z / temperature), truth, y


def test_an_underconfident_multiclass_model_gets_a_map_the_brier_test_alone_misses():
    rng = np.random.default_rng(1)
    ref, _, ref_y = stream(rng, 300, 1.25)
    loss = row_losses(held_out(ref, ref_y), ref_y)
    gains = [(loss["identity"] - loss[k]).mean() / ((loss["identity"] - loss[k]).std(ddof=1) / np.sqrt(300))
             for k in ("platt", "isotonic")]
    assert max(gains) < 1.0  # the held-out Brier test alone would keep the scores
    assert top_class_z(ref, ref_y) > 3.0  # the reference is right far more often than its scores say
    cals = fit_calibrators(ref, ref_y)
    assert cals[0].kind in ("platt", "isotonic")

    window, truth, _ = stream(rng, 5000, 1.25)
    exact = np.mean(truth[np.arange(len(truth)), window.argmax(axis=1)])
    error = abs(CBPE(CLASSES, cals).estimate(window)["accuracy"].value - exact)
    raw = abs(CBPE(CLASSES, [Calibrator("identity")] * K).estimate(window)["accuracy"].value - exact)
    assert error < raw / 2


def test_a_calibrated_multiclass_model_keeps_its_scores():
    rng = np.random.default_rng(6)
    ref, _, ref_y = stream(rng, 300, 1.0)
    assert abs(top_class_z(ref, ref_y)) < 3.0
    assert choose(ref, ref_y)[0] == "identity"
