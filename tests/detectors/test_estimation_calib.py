"""CBPE's calibrator rule (detectors/estimation_calib.py) on an underconfident multiclass model:
the case where the held-out Brier test alone kept the miscalibrated scores (bench/README.md,
"Over many seeds": scikit-learn's digits on 5 of 10 references)."""

from __future__ import annotations

import numpy as np
import pytest

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


# -- isotonic's end blocks (bench/README.md, "Performance estimation": breast_cancer's recall and
# ROC AUC bands) ------------------------------------------------------------------------------
def confident(rng: np.random.Generator, n: int):
    """A confident binary model (scores piled up near 0 and 1) whose errors are rare: P(class 1 |
    s) = 0.004 + 0.992 s, so a few hundred reference rows often hold no event at one end."""
    s = rng.beta(0.3, 0.3, n)
    return s, (rng.random(n) < 0.004 + 0.992 * s).astype(int)


def test_an_end_block_without_an_event_gets_the_jeffreys_posterior_mean_and_a_spread():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    s, y = confident(rng, 400)
    mle = IsotonicRegression(y_min=0.0, y_max=1.0).fit(s, y).predict(s)
    low, high = int(np.count_nonzero(mle <= 0)), int(np.count_nonzero(mle >= 1))
    assert low > 50 and high > 50  # maximum likelihood: class 1 never occurs below, always above
    cal = fit_calibrators(np.c_[1 - s, s], y, kind="isotonic")[0]
    bottom, top = cal(s[mle <= 0]), cal(s[mle >= 1])
    assert bottom.min() > 0 and top.max() < 1
    # on average over the block the posterior mean; within it, the model's own score's shape
    assert bottom.mean() == pytest.approx(0.5 / (low + 1))
    assert 1 - top.mean() == pytest.approx(0.5 / (high + 1))
    assert bottom == pytest.approx(bottom.mean() * s[mle <= 0] / s[mle <= 0].mean())
    assert np.all(np.diff(cal.params["y"]) >= 0)  # still monotone
    bins, dev = cal.spread(np.array([0.0, 1.0]))
    # the bootstrap alone gives these bins no spread: no resample has an event there
    assert np.all(np.abs(dev[:, bins]).max(axis=0) > 0)


def test_isotonic_end_blocks_keep_the_band_at_its_level_where_the_truth_is_known(monkeypatch):
    import driftline.detectors.estimation_calib as calib
    from driftline.detectors.estimation import realised_classification

    def run(prior: float) -> tuple[dict, dict]:
        monkeypatch.setattr(calib, "PRIOR", prior)
        rng = np.random.default_rng(3)
        hits: dict = {}
        errors: dict = {}
        for _ in range(100):  # a new reference and window each time: coverage over references
            s, y = confident(rng, 400)
            est = CBPE(["a", "b"], fit_calibrators(np.c_[1 - s, s], y, kind="isotonic"))
            w, wy = confident(rng, 2000)
            e = est.estimate(w)
            r = realised_classification(np.c_[1 - w, w], np.array(["a", "b"])[wy], ["a", "b"])
            for m, v in e.items():
                hits.setdefault(m, []).append(v.lower <= r[m] <= v.upper)
                errors.setdefault(m, []).append(abs(v.value - r[m]))
        return {m: np.mean(v) for m, v in hits.items()}, {m: np.mean(v) for m, v in errors.items()}

    coverage, error = run(0.5)
    before, error_before = run(0.0)  # the map at exactly 0 / 1: ROC AUC's band covered ~85 %
    assert before["roc_auc"] < 0.9
    assert all(c >= 0.9 for c in coverage.values()), coverage
    assert all(error[m] <= error_before[m] * 1.02 for m in error), (error, error_before)


def test_a_saved_isotonic_map_at_exactly_zero_loads_as_it_was():
    state = {"kind": "isotonic", "x": [0.0, 0.3, 0.6, 1.0], "y": [0.0, 0.0, 0.5, 1.0]}
    cal = Calibrator.from_state(state)
    assert cal(np.array([0.1, 0.45, 0.8])).tolist() == pytest.approx([0.0, 0.25, 0.75])
    assert cal.to_state() == state
