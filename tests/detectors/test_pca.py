"""The default multivariate detector (detectors/pca.py): calibrated on stationary streams of any
marginal shape, blind spots of per-feature tests caught, ids left out, state kept, on by default."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import stats

from driftline.detectors.config import DataDriftSettings, DetectorsConfig, ModelConfig, MultivariateSettings
from driftline.detectors.drift import DataDriftDetector
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.pca import STATISTIC, PCADriftDetector, fit
from driftline.detectors.reference import from_events

from .detector_streams import prediction

SHAPES = ("gaussian", "student_t2", "lognormal", "mixed")


def _matrix(shape: str, rng: np.random.Generator, n: int, p: int = 8, flip: bool = False) -> np.ndarray:
    """Columns 0 and 1 correlated +0.8 (-0.8 with ``flip``; both N(0, 1) either way), the rest
    of the given marginal shape. ``mixed``: Poisson, 0/1, constant, mostly-null, Student-t(2)."""
    x = rng.standard_normal((n, p))
    x[:, 1] = (-0.8 if flip else 0.8) * x[:, 0] + 0.6 * x[:, 1]
    if shape == "student_t2":
        x[:, 2:] = rng.standard_t(2, (n, p - 2))
    elif shape == "lognormal":
        x[:, 2:] = np.exp(x[:, 2:])
    elif shape == "mixed":
        x[:, 2] = rng.poisson(3, n)
        x[:, 3] = rng.random(n) < 0.1
        x[:, 4] = 1.0
        x[:, 5] = np.where(rng.random(n) < 0.7, np.nan, x[:, 5])
        x[:, 6] = rng.standard_t(2, n)
    return x


def _rows(shape: str, rng: np.random.Generator, n: int, flip: bool = False) -> list[dict[str, Any]]:
    """Feature dicts of :func:`_matrix`, plus (``mixed``) a categorical feature with a long tail."""
    x = _matrix(shape, rng, n, flip=flip)
    rows = [{f"f{j}": (None if v != v else float(v)) for j, v in enumerate(r)} for r in x.tolist()]
    if shape == "mixed":
        cats = rng.zipf(1.5, n)
        for r, c in zip(rows, cats.tolist()):
            r["plan"] = f"p{min(c, 60)}"
    return rows


# -- calibration: false verdicts per window within alpha, whatever the marginals ------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_stationary_windows_are_flagged_at_the_stated_rate(shape: str) -> None:
    # Many references (the rate is over references, as the alpha is) x windows of 200 rows,
    # scored exactly as the detector scores a window (fit, errors, Calibration.test).
    references, windows, m = 20, 50, 200
    loose, strict = 0.01, MultivariateSettings().alpha
    false_loose = false_strict = 0
    for seed in range(references):
        rng = np.random.default_rng(seed)
        model, cal = fit(_matrix(shape, rng, 1000))
        errors = model.errors(_matrix(shape, rng, windows * m)).reshape(windows, m)
        for e in errors:
            z, p, thr = cal.test(e, loose)
            false_loose += z > thr
            assert (p < loose) == (z > thr)  # the p-value and the threshold agree
            z, _, thr = cal.test(e, strict)
            false_strict += z > thr
    n = references * windows
    # Within what alpha allows: at most the binomial 99.9 % quantile of n windows at alpha.
    assert false_loose <= stats.binom.ppf(0.999, n, loose), (shape, false_loose, n)
    assert false_strict <= stats.binom.ppf(0.999, n, strict), (shape, false_strict, n)
    # ... and not silent either: at 1 % some stationary windows do cross (the test can fail).
    assert false_loose >= stats.binom.ppf(0.001, n, loose), (shape, false_loose, n)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_correlation_flip_no_marginal_sees_is_flagged_in_the_first_window(shape: str) -> None:
    rng = np.random.default_rng(42)
    ref = _rows(shape, rng, 1000)
    det = PCADriftDetector(ref, MultivariateSettings(), min_samples=100)
    uni = DataDriftDetector(from_events([{"features": r, "prediction": 0} for r in ref], "m", "v1").features,
                            DataDriftSettings(), min_samples=100)
    verdicts = []
    for flip in (False, False, False, True):
        for r in _rows(shape, rng, 1000, flip=flip):
            det.update(r)
            uni.update(r)
        (res,) = det.close_window()
        uni.close_window()
        assert res.detector == "multivariate.pca" and res.feature == "*" and res.statistic == STATISTIC
        assert res.drift is det.drift_detected and (res.p_value < det.settings.alpha) is res.drift, res
        verdicts.append(res.drift)
        assert not any(uni.verdicts.values()), uni.verdicts  # every marginal unchanged
    assert verdicts == [False, False, False, True]
    details = dict(res.details)
    assert details["mean_error"] > 2 * details["reference_error"]  # the flipped pair leaves the subspace


# -- what the model sees -------------------------------------------------------------------------
def test_excluded_and_categorical_features() -> None:
    rng = np.random.default_rng(3)
    ref = _rows("mixed", rng, 600)
    for i, r in enumerate(ref):
        r["uid"] = f"{i:08x}"
        r["seq"] = i
    det = PCADriftDetector(ref, MultivariateSettings(), exclude=("uid", "seq"))
    assert "uid" not in det.columns.names and "seq" not in det.columns.names
    assert [n for n, _ in det.columns.categorical] == ["plan"]
    assert len(det.columns.categorical[0][1]) == MultivariateSettings().top_categories
    # Without categories (top_categories 0) and with every level of a two-level feature: no
    # always-zero direction (at most one indicator for two levels).
    assert PCADriftDetector(ref, MultivariateSettings(top_categories=0), exclude=("uid", "seq")).columns.categorical == ()
    two = [{"a": float(i % 7), "b": float(i % 3), "c": "xy"[i % 2]} for i in range(200)]
    assert [len(c) for _, c in PCADriftDetector(two, MultivariateSettings()).columns.categorical] == [1]


def test_too_few_features_or_rows_reports_nothing() -> None:
    one = [{"a": float(i)} for i in range(200)]
    det = PCADriftDetector(one, MultivariateSettings(), min_samples=10)
    for r in one:
        det.update(r)
    assert det.close_window() == () and det.drift_detected is False
    det = PCADriftDetector([{"a": 1.0, "b": 2.0}] * 10, MultivariateSettings(), min_samples=10)
    assert det.model is None


def test_odd_values_do_not_raise_and_count_as_missing() -> None:
    rng = np.random.default_rng(5)
    ref = _rows("gaussian", rng, 500)
    det = PCADriftDetector(ref, MultivariateSettings(), min_samples=10)
    rows = _rows("gaussian", rng, 300)
    rows[0]["f0"], rows[1]["f1"], rows[2]["f2"] = "n/a", [1, 2], None
    del rows[3]["f3"]
    for r in rows:
        det.update(r)
    (res,) = det.close_window()
    assert res.current_size == 300 and res.drift is False
    x = det.columns.matrix(rows[:4])
    assert np.isnan([x[0, 0], x[1, 1], x[2, 2], x[3, 3]]).all()


def test_the_window_is_a_bounded_sample() -> None:
    rng = np.random.default_rng(6)
    det = PCADriftDetector(_rows("gaussian", rng, 500), MultivariateSettings(sample_size=100), min_samples=10)
    rows = _rows("gaussian", rng, 1000)
    det.update_many(rows[:50])
    for r in rows[50:]:
        det.update(r)
    assert len(det.rows) == 100 and det.n == 1000
    (res,) = det.close_window()
    assert dict(res.details)["sample"] == 100 and res.current_size == 1000


@pytest.mark.parametrize("shape", SHAPES)
def test_a_rows_error_is_its_squared_distance_from_the_principal_subspace(shape: str) -> None:
    """``errors`` takes the norm minus the principal projection: it must equal the distance from
    the subspace computed directly, y - (y P) P^T."""
    rng = np.random.default_rng(11)
    model, _ = fit(_matrix(shape, rng, 1000))
    x = _matrix(shape, rng, 300)
    y = (model._standardise(model._scores(x)) - model.center)[:, model._varies]
    basis = model.principal[model._varies]
    assert np.allclose(basis.T @ basis, np.eye(model.components))  # orthonormal
    off = y - (y @ basis) @ basis.T
    assert model.residual_dims == y.shape[1] - model.components >= 1
    assert np.allclose(model.errors(x), (off * off).sum(axis=1), rtol=1e-9, atol=1e-9)


# -- state -----------------------------------------------------------------------------------------
def test_state_round_trips_through_json_and_a_changed_feature_set_starts_empty() -> None:
    rng = np.random.default_rng(7)
    ref = _rows("mixed", rng, 800)
    settings = MultivariateSettings(sample_size=300)
    det, twin = PCADriftDetector(ref, settings), PCADriftDetector(ref, settings)
    rows = _rows("mixed", rng, 1000, flip=True)
    for r in rows[:500]:
        det.update(r)
    state = json.loads(json.dumps(det.get_state()))
    twin.set_state(state)
    assert twin.get_state() == det.get_state()
    for r in rows[500:]:
        det.update(r)
        twin.update(r)
    assert det.close_window() == twin.close_window()
    assert det.drift_detected is twin.drift_detected is True
    # A new exclusion changes what a kept row holds: those rows are not mixed in.
    narrower = PCADriftDetector(ref, settings, exclude=("f2",))
    narrower.set_state(state)
    assert narrower.m == 0 and narrower.n == 500


def test_kept_rows_saved_as_lists_of_numbers_before_still_load_alone_or_beside_new_ones() -> None:
    """Kept rows were saved as lists of numbers (None missing, -1 another category) until 5 Dec 2026,
    now as base64 float64: a state of either kind, or both (a snapshot of old rows, then deltas of
    new ones), gives the window a detector that never stopped gives; missing values stay missing."""
    rng = np.random.default_rng(9)
    ref = _rows("mixed", rng, 800)
    settings = MultivariateSettings(sample_size=300)
    det = PCADriftDetector(ref, settings)
    rows = _rows("mixed", rng, 1000, flip=True)
    for r in rows[::7]:
        r["f0"] = None
        r["plan"] = "never-seen"
    for r in rows[:500]:
        det.update(r)
    state = json.loads(json.dumps(det.get_state()))
    assert all(type(r) is str for r in state["rows"])
    p = len(det.columns.numeric)
    assert np.isnan(det.columns.decode(state["rows"])[:, 0]).any(), "missing numbers stay NaN"

    def before(row: Any) -> list[Any]:  # the encoding of a kept row until 5 Dec 2026
        out = row.tolist()
        out[:p] = [None if f != f else f for f in out[:p]]
        out[p:] = [-1 if c != c else int(c) for c in out[p:]]
        return out

    old = json.loads(json.dumps(dict(state, rows=[before(r) for r in det.rows[:det.m]])))
    both = dict(state, rows=old["rows"][:150] + state["rows"][150:])
    twins = [PCADriftDetector(ref, settings) for _ in range(2)]
    for twin, st in zip(twins, (old, both)):
        twin.set_state(st)
        assert twin.m == det.m == 300
    for r in rows[500:]:
        for d in (det, *twins):
            d.update(r)
    want = det.close_window()
    assert want and [t.close_window() for t in twins] == [want, want]


def test_a_kept_row_encodes_the_same_on_the_fast_path_and_the_value_by_value_one() -> None:
    """Rows of plain numbers are converted by numpy, any other row value by value: the same state
    (the same matrix for the model once saved and loaded)."""
    from driftline.detectors.pca import _number

    rng = np.random.default_rng(8)
    det = PCADriftDetector(_rows("mixed", rng, 500), MultivariateSettings())
    cols = det.columns
    assert len(cols.numeric) > 1 and cols.categorical

    def by_value(row: dict[str, Any]) -> Any:
        nums = [_number(row.get(n)) for n in cols.numeric]
        return np.array([nums + [cols._code(c, row.get(n)) for n, c in cols.categorical]], dtype=float)

    plain = _rows("mixed", rng, 5)
    first = cols.numeric[0]
    odd = [dict(plain[0], **{first: 3}), dict(plain[1], **{first: float("nan")}), dict(plain[2], **{first: True}),
           dict(plain[3], **{first: "2.5"}), {k: v for k, v in plain[4].items() if k != first},
           dict(plain[0], **{first: float("inf")}), dict(plain[1], **{first: 2**70})]
    for row in plain + odd:
        got = cols.decode(json.loads(json.dumps([cols.encode(cols.coded([row])[0])])))
        assert np.array_equal(cols.expand(got), cols.expand(by_value(row)), equal_nan=True), row


def test_a_batch_keeps_the_rows_one_by_one_would() -> None:
    """``update_many`` picks the reservoir's rows as ``update`` does one at a time (a slot picked
    twice in a batch keeps the later row), and converts them together: the same state and result."""
    rng = np.random.default_rng(9)
    ref = _rows("mixed", rng, 800)
    settings = MultivariateSettings(sample_size=100)
    one, many = PCADriftDetector(ref, settings), PCADriftDetector(ref, settings)
    rows = _rows("mixed", rng, 1500, flip=True)
    rows[700] = {k: v for k, v in rows[700].items() if k != one.columns.numeric[0]}  # a batch on the slow path
    for r in rows:
        one.update(r)
    for a, b in ((0, 60), (60, 61), (61, 400), (400, 1500)):
        many.update_many(rows[a:b])
    assert one.get_state() == many.get_state() and one.m == many.m == 100 and one.n == 1500
    assert one.close_window() == many.close_window()


# -- wiring: on by default, ids left out ---------------------------------------------------------
def test_default_config_enables_the_pca_backend() -> None:
    mv = ModelConfig(model="m").multivariate
    assert mv.enabled is True and mv.backend == "pca" and mv.alpha == 1e-4
    assert DetectorsConfig().default_for("new").multivariate == mv


def _engine_rows(multivariate: dict[str, Any], data_drift: dict[str, Any], windows: int = 4) -> list[Any]:
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": 500}, "min_samples": 100,
        "concept": {"enabled": False}, "multivariate": multivariate, "data_drift": data_drift}))
    rng = np.random.default_rng(9)

    def events(start: int, n: int) -> list[dict[str, Any]]:
        rows = _rows("gaussian", rng, n)
        for i, r in enumerate(rows, start):
            r["seq"] = i                       # a counter: an id
            r["ts"] = 1_767_225_600 + 7 * i    # a timestamp
        return rows

    eng.set_reference(from_events([{"features": r, "prediction": 0} for r in events(0, 2000)], "m", "v1"))
    for i, f in enumerate(events(2000, windows * 500), 2000):
        eng.observe_prediction(prediction(i, f, 0))
    return [r for r in eng.poll() if r.detector.startswith("multivariate.")]


def test_ids_and_timestamps_are_left_out_of_the_default_detector() -> None:
    rows = _engine_rows({}, {})
    assert [r.detector for r in rows] == ["multivariate.pca"] * 4
    assert not any(r.drift for r in rows), rows
    assert {json.loads(r.details)["features"] for r in rows} == {8}  # f0..f7, not seq or ts
    # Judged anyway (auto_exclude off), they are in. (The counter and the timestamp move together
    # along a principal direction, which reconstruction error does not see; the domain
    # classifier would call every window drift: tests/detectors/test_exclusions.py.)
    kept = _engine_rows({}, {"auto_exclude": False})
    assert {json.loads(r.details)["features"] for r in kept} == {10}
    # Excluded by name: left out too.
    named = _engine_rows({}, {"auto_exclude": False, "exclude": ["seq", "ts", "f7"]}, windows=1)
    assert [json.loads(r.details)["features"] for r in named] == [7]
    # Off when asked.
    assert _engine_rows({"enabled": False}, {}) == []


def test_a_state_kept_under_a_larger_sample_size_restores() -> None:
    """Rows saved under a larger ``sample_size`` are all kept; new rows then replace them."""
    rng = np.random.default_rng(10)
    ref = _rows("mixed", rng, 800)
    big = PCADriftDetector(ref, MultivariateSettings(sample_size=400))
    big.update_many(_rows("mixed", rng, 300))
    small = PCADriftDetector(ref, MultivariateSettings(sample_size=100))
    small.set_state(json.loads(json.dumps(big.get_state())))
    assert small.m == 300 and small.get_state()["rows"] == big.get_state()["rows"]
    small.update_many(_rows("mixed", rng, 200))
    assert small.m == 300 and small.n == 500 and len(small.close_window()) == 1
