"""The estimation's faster paths give the numbers of the paths they replaced, exactly: the
realised metrics of a binary model (counts of the positive class alone) against the general
one-hot computation with scipy's ranks, the tie-averaged ranks against scipy's, the band
variances of all metrics at once against one metric at a time, the band terms without
``nan_to_num`` when finite, and a binary window's scores in [0, 1] without the checks they pass.
One replacement sums in another order and is checked to 1e-12 relative instead: a binary
window's estimates and bands on the positive column alone (:func:`expected_binary`)."""

from __future__ import annotations

import types

import numpy as np
import pytest
from scipy.stats import rankdata

from driftline.detectors import estimation_metrics
from driftline.detectors.estimation import CBPE, EstimationError, _check_scores, realised_classification
from driftline.detectors.estimation_metrics import (_finite, _variances, auc_from_ranks, binary_columns,
                                                    expected_binary, expected_metrics, ratios, tie_ranks)


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


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    for m, w in want.items():
        g = got[m]
        assert np.isnan(g) == np.isnan(w), (m, g, w)
        assert np.isnan(w) or abs(g - w) <= 1e-12 * abs(w) + 1e-300, (m, g, w)


@pytest.mark.parametrize("seed", range(4))
def test_binary_estimates_and_bands_on_the_positive_column_equal_the_general_path(seed: int) -> None:
    """400 random windows per seed: sizes 1-1,500, ties on a score grid, one class predicted,
    calibrated probabilities all 0 or all 1 (undefined metrics), with and without a calibrator's
    spread; estimates and standard deviations within 1e-12 relative, NaN where the general path's."""
    rng = np.random.default_rng(seed)
    for it in range(400):
        n = int(rng.integers(1, 1500))
        p1 = rng.random(n) if it % 3 else rng.integers(0, 11, n) / 10
        if it % 11 == 0:
            p1 = p1 * 0.4  # no positive prediction
        q1 = (np.clip(p1 + rng.normal(0, 0.1, n), 0, 1) if it % 5
              else np.ones(n) if it % 2 else np.zeros(n))
        bins = rng.integers(0, 8, n)
        spread = (bins, rng.normal(size=(30, 8)) * 0.01) if it % 2 else None
        p = binary_columns(p1)
        values, sds, _ = expected_metrics(p, binary_columns(q1), [None, spread])
        got_values, got_sds = expected_binary(p, q1, spread)
        _close(got_values, values)
        _close(got_sds, sds)


def test_cbpe_binary_estimate_equals_the_general_path() -> None:
    rng = np.random.default_rng(5)
    p1 = rng.random(3000)
    y = np.where(rng.random(3000) < np.clip(p1 * 1.2 - 0.1, 0, 1), "yes", "no")
    cbpe = CBPE.fit(binary_columns(p1), y, ["no", "yes"])
    assert cbpe.calibrators[0].kind != "identity"  # a fitted map, with its spread
    window = rng.random(1000) ** 1.5
    got = cbpe.estimate(window)
    p = binary_columns(window)
    cal = cbpe.calibrators[0]
    values, sds, _ = expected_metrics(p, cbpe._calibrate(p), [None, cal.spread(window)])
    _close({m: e.value for m, e in got.items()}, values)
    z = estimation_metrics.normal_quantile(0.975)
    _close({m: e.upper for m, e in got.items()}, {m: min(1.0, values[m] + z * sds[m]) for m in values})


@pytest.mark.parametrize("seed", range(6))
def test_a_binary_windows_realised_metrics_from_its_rows_equal_the_checked_path(seed: int) -> None:
    """Fitted.realised of a binary window's rows (P(positive) floats) and class-name labels, the
    stream's re-grade, gives realised_classification's numbers repr for repr; rows or labels it
    does not take (NaN, a label outside the classes, old [p] rows) go the checked way, as before."""
    from driftline.detectors.estimate_fit import Fitted, fit_estimator

    rng = np.random.default_rng(seed)
    p = rng.random(400)
    fitted = Fitted(fit_estimator([{"no": 1 - float(x), "yes": float(x)} for x in p],
                                  ["yes" if rng.random() < x else "no" for x in p]))
    n = int(rng.integers(1, 500))
    rows = list(rng.integers(0, 11, n) / 10 if seed % 2 else rng.random(n) * (0.4 if seed == 4 else 1.0))
    labels = ["yes" if v else "no" for v in rng.random(n) < (0.0 if seed == 2 else 0.5)]
    if seed == 5:
        rows = [[r] for r in rows]  # a state saved before the float rows
    want = realised_classification(np.asarray(rows, dtype=float).reshape(n, -1)[:, 0], labels, ["no", "yes"])
    got = fitted.realised(rows, labels)
    assert [repr(got[m]) for m in want] == [repr(want[m]) for m in want]
    with pytest.raises(EstimationError):
        fitted.realised(rows, labels[:-1] + ["maybe"])
    with pytest.raises(EstimationError):
        fitted.realised([float("nan")] + rows[1:] if seed != 5 else rows, labels + ["no"] * (seed == 5))


def test_a_binary_predictions_positive_score_equals_its_checked_score_row() -> None:
    """The per-event P(positive) (two floats: no calls) against scores_of's checked row."""
    from driftline.detectors.estimate_fit import positive_score, scores_of

    rng = np.random.default_rng(0)
    preds: list = [{"n": float(1 - x), "y": float(x)} for x in rng.random(200)]
    preds += [{"n": 0.3, "y": 0.705}, {"n": 0.3, "y": 0.72}, {"n": 1e-10, "y": 1.0}, {"n": -2e-9, "y": 1.0},
              {"n": 0.0, "y": 1 + 2e-9}, {"n": float("nan"), "y": 0.5}, {"n": 0.5, "y": float("inf")},
              {"n": 0, "y": 1}, {"n": 0.25, "y": 1}, {"n": True, "y": 0.0}, {"y": 1.0}, {"n": 1.0}, {},
              {"n": "0.5", "y": 0.5}, [0.4, 0.6], 0.7, "{\"n\": 0.2, \"y\": 0.8}", None]
    for p in preds:
        row = scores_of(p, ["n", "y"])
        want = None if row is None else float(row[1])
        assert repr(positive_score(p, ["n", "y"])) == repr(want), p


@pytest.mark.parametrize("classes", [["0", "1"], ["no", "yes"], ["-1", "01", "1", "x"], ["1.5", "2", "True", "²"]])
def test_a_str_or_int_labels_class_by_look_up_equals_label(classes: list[str]) -> None:
    from driftline.detectors.estimate_fit import Fitted
    from driftline.detectors.estimation_calib import Calibrator

    names = sorted(classes)
    calibrators = [Calibrator("identity")] * (1 if len(names) == 2 else len(names))
    fitted = Fitted({"method": "cbpe", "classes": names, "state": CBPE(names, calibrators).to_state()})
    for label in [*classes, 0, 1, 2, -1, 10, True, 1.0, "2.0", "yes ", "", " 1", None]:
        y = fitted.label_of.get(label) if type(label) in (str, int) else fitted.label(label)
        assert y == fitted.label(label), label


def test_a_regressors_int_and_float_labels_are_graded() -> None:
    """DLE has no class look-up (label_of None): int and float labels are numbers, as label() says."""
    from driftline.detectors.config import ModelConfig
    from driftline.detectors.estimate_fit import Fitted, fit_estimator
    from driftline.detectors.estimate_stream import EstimationStreams

    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    info = fit_estimator([float(v) for v in x], [float(v + rng.normal()) for v in x], [{"x": float(v)} for v in x],
                         min_labels=50)
    assert Fitted(info).label_of is None
    streams = EstimationStreams(ModelConfig.model_validate({"model": "m", "performance_estimation": {"enabled": True}}))
    refs = {"v": types.SimpleNamespace(estimator=info)}
    for label in (5, 2.5, "3", True):
        streams.labelled("v", [""], 1.0, 0.0, label, refs)
    streams.flush()  # the labels after the first were buffered (estimate_batch)
    assert streams.open["v|"].labels == [5.0, 2.5]


def test_ranks_and_the_auc_curve_without_ties_equal_the_tied_path(monkeypatch) -> None:
    """Distinct scores skip the tie groups (each row its own): the same ranks and AUC as the
    grouped computation, which the scores with ties still take."""
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 1000):
        score, q = rng.random(n), rng.random(n)
        fast = estimation_metrics.ranks_and_auc(score, q)
        assert np.array_equal(fast[0], rankdata(score))
        original = estimation_metrics._sorted_ties

        def grouped(score: np.ndarray):  # every row a tie group of its own: the grouped curve
            order, starts, ranks = original(score)
            return order, (np.arange(len(score)) if starts is None else starts), ranks

        with monkeypatch.context() as m:  # force the grouped path on the same distinct scores
            m.setattr(estimation_metrics, "_sorted_ties", grouped)
            slow = estimation_metrics.ranks_and_auc(score, q)
        assert np.array_equal(fast[0], slow[0]) and repr(fast[1]) == repr(slow[1])


def test_the_estimator_kept_per_event_is_the_one_estimator_finds() -> None:
    """EstimationStreams keeps each version's estimator by its reference's identity: a replaced
    reference, a retirement and a load each give estimator()'s answer again."""
    from driftline.detectors.config import ModelConfig
    from driftline.detectors.estimate_stream import EstimationStreams
    from driftline.detectors.estimation_calib import Calibrator

    def ref(classes: list[str]) -> types.SimpleNamespace:
        state = CBPE(classes, [Calibrator("identity")]).to_state()
        return types.SimpleNamespace(estimator={"method": "cbpe", "classes": classes, "state": state})

    streams = EstimationStreams(ModelConfig.model_validate({"model": "m", "performance_estimation": {"enabled": True}}))
    pred = {"0": 0.2, "1": 0.8, "a": 0.9, "b": 0.1}
    refs = {"v": ref(["0", "1"])}
    streams.observe("v", [""], {"prediction": pred}, refs)
    refs["v"] = ref(["a", "b"])  # a new reference: P(b) now
    streams.observe("v", [""], {"prediction": pred}, refs)
    assert streams.open["v|"].rows == [0.8, 0.1]
    streams.retire("v")
    refs = {"*": ref(["0", "1"])}  # the model's reference, no version's
    streams.observe("v", [""], {"prediction": pred}, refs)
    streams.set_state(streams.get_state())
    refs = {"*": ref(["a", "b"])}
    streams.observe("v", [""], {"prediction": pred}, refs)
    assert streams.open["v|"].rows == [0.8, 0.1]
    assert streams.estimator("v", refs) is streams._hot["v"][1]


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


def test_all_columns_ranks_and_aucs_match_the_per_column_path() -> None:
    """A multiclass window's ranks and expected ROC AUCs from one sort of the (n, k) scores equal the
    per-column path's (ranks exactly, AUCs to ~1e-13), with ties (rounded scores, repeated rows) too."""
    from driftline.detectors.estimation_metrics import ranks_and_auc, ranks_and_aucs

    rng = np.random.default_rng(8)
    for n, k, digits in ((300, 10, None), (1000, 3, None), (2, 4, None), (57, 5, None), (400, 10, 2),
                         (300, 3, 1), (1, 3, None), (50, 4, 0)):
        p = rng.dirichlet(np.ones(k), size=n)
        if digits is not None:
            p = np.round(p, digits)  # ties in every column
        q = rng.dirichlet(np.ones(k), size=n)
        q[:, 0] = 0.0 if n == 57 else q[:, 0]  # a class nobody is expected to be: its AUC undefined
        ranks, aucs = ranks_and_aucs(p, q)
        for c in range(k):
            r1, a1 = ranks_and_auc(p[:, c], q[:, c])
            assert np.array_equal(ranks[:, c], r1)
            assert (np.isnan(a1) and np.isnan(aucs[c])) or aucs[c] == pytest.approx(a1, rel=1e-13, abs=1e-15)
    rows = rng.dirichlet(np.ones(4), size=30)
    p = rows[rng.choice(30, size=200)]  # a window that repeats rows (bench_estimation's real data sets)
    q = rng.dirichlet(np.ones(4), size=30)[rng.choice(30, size=200)]
    ranks, aucs = ranks_and_aucs(p, q)
    for c in range(4):
        r1, a1 = ranks_and_auc(p[:, c], q[:, c])
        assert np.array_equal(ranks[:, c], r1) and aucs[c] == pytest.approx(a1, rel=1e-13)
