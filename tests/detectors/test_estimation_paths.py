"""The estimation's faster paths give the numbers of the paths they replaced, exactly: the
realised metrics of a binary model (counts of the positive class alone) against the general
one-hot computation with scipy's ranks, the tie-averaged ranks against scipy's, the band
variances of all metrics at once against one metric at a time, the band terms without
``nan_to_num`` when finite, and a binary window's scores in [0, 1] without the checks they pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from driftline.detectors import estimation_metrics
from driftline.detectors.estimation import EstimationError, _check_scores, realised_classification
from driftline.detectors.estimation_metrics import (_finite, _variances, auc_from_ranks, binary_columns,
                                                    expected_metrics, ratios, tie_ranks)


def _general(p1: np.ndarray, labels: list[str]) -> dict[str, float]:
    """The general path (any number of classes) as it was, for two classes."""
    p = np.clip(np.c_[1.0 - p1, p1], 0.0, 1.0)
    y = np.array([{"0": 0, "1": 1}[v] for v in labels])
    pred = p.argmax(axis=1)
    yt, yp = np.eye(2, dtype=bool)[y], np.eye(2, dtype=bool)[pred]
    precision, recall, f1 = ratios((yt & yp).sum(0).astype(float), (~yt & yp).sum(0).astype(float),
                                   (yt & ~yp).sum(0).astype(float))
    return {"accuracy": float(np.mean(pred == y)), "precision": float(precision[1]), "recall": float(recall[1]),
            "f1": float(f1[1]), "roc_auc": float(auc_from_ranks(rankdata(p[:, 1]), yt[:, 1]))}


@pytest.mark.parametrize("seed", range(6))
def test_binary_realised_metrics_equal_the_general_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # ties (scores on a grid, 0.5 among them), one class only, no positive prediction: all in some seed
    p1 = rng.integers(0, 11, n) / 10 if seed % 2 else rng.random(n) * (0.4 if seed == 4 else 1.0)
    labels = [str(int(v)) for v in (rng.random(n) < (0.0 if seed == 2 else 0.5))]
    got = realised_classification(p1, labels, ["0", "1"])
    want = _general(p1, labels)
    assert [repr(got[m]) for m in want] == [repr(want[m]) for m in want]  # NaN included


def test_tie_ranks_equal_scipy_rankdata() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 1000):
        for x in (rng.random(n), rng.integers(0, 4, n).astype(float)):
            assert np.array_equal(tie_ranks(x), rankdata(x))


@pytest.mark.parametrize("n,k", [(1, 2), (1000, 2), (777, 3), (5000, 9)])
def test_the_variances_of_all_metrics_at_once_equal_one_metric_at_a_time(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    q = rng.dirichlet(np.ones(k), n)
    terms = rng.normal(size=(5, n, k)) / n
    one_at_a_time = [float(np.sum(np.sum(q * t ** 2, axis=1) - np.sum(q * t, axis=1) ** 2)) for t in terms]
    assert [float(v) for v in _variances(q, terms)] == one_at_a_time


def test_a_band_term_kept_as_is_when_finite_equals_nan_to_num() -> None:
    rng = np.random.default_rng(3)
    finite = rng.normal(size=(50, 2))
    odd = finite.copy()
    odd[[1, 5, 9], [0, 1, 0]] = [np.nan, np.inf, -np.inf]
    for x in (finite, odd):
        assert np.array_equal(_finite(x), np.nan_to_num(x))


@pytest.mark.parametrize("seed", range(4))
def test_the_band_terms_without_nan_to_num_give_the_same_estimates(seed: int, monkeypatch) -> None:
    """expected_metrics with nan_to_num on every term (as it was) and with it only where a term
    is not finite: the same estimates and standard deviations, a class never predicted or never
    likely (non-finite terms) included."""
    rng = np.random.default_rng(seed)
    n = 300
    p1 = rng.random(n) if seed < 2 else np.full(n, 0.2 + 0.1 * seed)  # seed 2, 3: one class predicted
    p = binary_columns(p1)
    # seed 3: class 0 never likely (its recall terms divide by zero, the positive class's stay finite)
    q = binary_columns(np.clip(p1 + rng.normal(0, 0.05, n), 0, 1) if seed != 3 else np.ones(n))
    now = expected_metrics(p, q)
    monkeypatch.setattr(estimation_metrics, "_finite", np.nan_to_num)
    before = expected_metrics(p, q)
    assert repr(now[:2]) == repr(before[:2])  # NaN included


@pytest.mark.parametrize("p1", [np.array([0.0, 1.0, 0.5, 0.5, 0.25]), np.random.default_rng(1).random(1000),
                                np.array([1.0 + 5e-10, 0.3, -5e-10]), np.array([0.2, np.nan]), np.array([1.5])])
def test_binary_scores_in_range_skip_checks_that_pass_and_the_rest_are_checked_as_before(p1: np.ndarray) -> None:
    def old(x: np.ndarray) -> np.ndarray:
        return _check_scores(binary_columns(x), 2)  # the (n, 2) path, every check and the clip

    try:
        want = old(p1)
    except EstimationError as exc:
        with pytest.raises(EstimationError, match=str(exc)[:20]):
            _check_scores(p1, 2)
        return
    assert np.array_equal(_check_scores(p1, 2), want)


def test_multiclass_joint_spreads_and_vector_platt_match_the_per_class_path() -> None:
    """A multiclass window's calibrator variance as one bincount/einsum (JointSpreads) and all-Platt
    calibration as one array operation give the per-class path's numbers (the variance to ~1e-12:
    its sums run in another order; the calibrated probabilities element for element)."""
    from driftline.detectors.estimation import CBPE
    from driftline.detectors.estimation_calib import fit_calibrators
    from driftline.detectors.estimation_metrics import JointSpreads, expected_metrics

    rng = np.random.default_rng(4)
    for k, kind, n in ((3, "platt", 400), (10, "platt", 300), (5, "isotonic", 700), (4, None, 250)):
        logits = rng.normal(size=(3000, k)) * 1.5
        p_ref = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = np.array([rng.choice(k, p=row) for row in p_ref ** 1.3 / (p_ref ** 1.3).sum(axis=1, keepdims=True)])
        cals = fit_calibrators(p_ref, y, kind=kind)
        est = CBPE([f"c{c}" for c in range(k)], cals)
        window = p_ref[rng.choice(3000, size=n)]
        per_class_q = np.column_stack([c(window[:, i]) for i, c in enumerate(cals)])
        total = per_class_q.sum(axis=1, keepdims=True)
        per_class_q = np.where(total > 0, per_class_q / np.where(total > 0, total, 1.0), window)
        assert np.array_equal(est._calibrate(window), per_class_q)
        tables = [c.spread_table for c in cals]
        joint = JointSpreads.of([e for e, _ in tables], [d for _, d in tables], window)
        assert (joint is None) == (cals[0].kind == "identity")
        if joint is None:
            continue
        per = [c.spread(window[:, i]) for i, c in enumerate(cals)]
        v1, s1, c1 = expected_metrics(window, per_class_q, per)
        v2, s2, c2 = expected_metrics(window, per_class_q, joint)
        assert v1 == v2 and np.array_equal(c1, c2)
        for m in s1:
            assert s2[m] == pytest.approx(s1[m], rel=1e-12, abs=1e-15), (k, kind, m)
        assert any(s1[m] != expected_metrics(window, per_class_q, ())[1][m] for m in s1)  # the spread counts
    assert JointSpreads.of([np.array([0.2, 0.5]), np.array([0.3])], [np.ones((2, 3)), np.ones((2, 2))],
                           np.full((4, 2), 0.5)) is None  # tables of different shapes: per class
