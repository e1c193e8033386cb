"""One contract, every detector (STYLE point 4): update(), read-only drift_detected, reset(),
state save/restore, frozen-dataclass results, one verdict per feature and window."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any, Callable

import pytest

from driftline.detectors.abtest import ABTestDetector
from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.concept import ERROR_DETECTORS, ErrorStreamDetector, PerformanceDetector
from driftline.detectors.config import (
    ABSettings, DataDriftSettings, MultivariateSettings, QualitySettings, ShadowSettings,
)
from driftline.detectors.drift import DataDriftDetector, PredictionDriftDetector
from driftline.detectors.histogram import profile_categorical, profile_numeric
from driftline.detectors.multivariate import DomainClassifierDetector
from driftline.detectors.pca import PCADriftDetector
from driftline.detectors.quality import QualityDetector
from driftline.detectors.shadow import ShadowDivergenceDetector

_rng = random.Random(0)
REF_ROWS = [{"a": _rng.gauss(0, 1), "b": _rng.choice("xyz")} for _ in range(300)]
PROFILES = {"a": profile_numeric("a", [r["a"] for r in REF_ROWS], bins=10),
            "b": profile_categorical("b", [r["b"] for r in REF_ROWS], max_categories=10)}


def _rows(rng: random.Random, shift: float) -> Callable[[int], tuple]:
    return lambda i: ({"a": rng.gauss(shift, 1), "b": rng.choice("xyzw" if shift else "xyz"), "c": 1},)


def _drift(): return DataDriftDetector(PROFILES, DataDriftSettings(), min_samples=20)
def _pred(): return PredictionDriftDetector(PROFILES, DataDriftSettings(), min_samples=20)
def _quality(): return QualityDetector(PROFILES, QualitySettings(), min_samples=20)
def _mv(): return DomainClassifierDetector(REF_ROWS, MultivariateSettings(enabled=True, sample_size=200), min_samples=50)
# Reconstruction error sees a change in how features move together (not a marginal shift).
def _pca_rows(rng: random.Random, sign: float) -> Callable[[int], tuple]:
    return lambda i: ({"a": (x := rng.gauss(0, 1)), "c": sign * x + rng.gauss(0, 0.5), "b": rng.choice("xyz")},)


PCA_REF = [_pca_rows(_rng, 1.0)(i)[0] for i in range(600)]
def _pca(): return PCADriftDetector(PCA_REF, MultivariateSettings(sample_size=200), min_samples=50)
def _perf(): return PerformanceDetector("classification", min_samples=20, baseline={"accuracy": 0.9})
def _shadow(): return ShadowDivergenceDetector("v1->v2", ShadowSettings(), min_samples=20)
def _ab(): return ABTestDetector(ABSettings(enabled=True, control="A"), min_samples=20)


def _feature_inputs(shift: float) -> Callable[[random.Random], Callable[[int], tuple]]:
    return lambda rng: _rows(rng, shift)


FACTORIES: dict[str, tuple[Callable[[], Detector], Callable[[random.Random], Callable[[int], tuple]]]] = {
    "data_drift": (_drift, _feature_inputs(2.0)),
    "prediction_drift": (_pred, _feature_inputs(2.0)),
    "quality": (_quality, _feature_inputs(2.0)),
    "domain_classifier": (_mv, _feature_inputs(2.0)),
    "pca": (_pca, lambda rng: _pca_rows(rng, -1.0)),
    "performance": (_perf, lambda rng: lambda i: ({"1": (s := rng.random()), "0": 1 - s}, int(rng.random() < 0.5))),
    "shadow": (_shadow, lambda rng: lambda i: ({"prediction": "a", "latency_ms": 5.0},
                                               {"prediction": "a" if rng.random() < 0.7 else "b", "latency_ms": 7.0})),
    "ab": (_ab, lambda rng: lambda i: ("A" if i % 2 else "B", "conversion", float(rng.random() < (0.1 if i % 2 else 0.3)))),
    **{f"concept.{m}": ((lambda m=m: ErrorStreamDetector(m, seed=1)),
                        lambda rng: lambda i: (float(rng.random() < (0.05 if i < 1500 else 0.6)),))
       for m in ERROR_DETECTORS},
}

ALL_DETECTOR_CLASSES = {DataDriftDetector, PredictionDriftDetector, QualityDetector, DomainClassifierDetector, PCADriftDetector,
                        PerformanceDetector, ShadowDivergenceDetector, ABTestDetector, ErrorStreamDetector}


def test_every_detector_class_is_covered():
    from driftline.detectors import (abtest, concept, drift, multivariate, pca, quality, shadow)
    found = {obj for mod in (abtest, concept, drift, multivariate, pca, quality, shadow)
             for obj in vars(mod).values()
             if isinstance(obj, type) and issubclass(obj, Detector) and obj is not Detector}
    covered = {type(f()) for f, _ in FACTORIES.values()}
    assert found == ALL_DETECTOR_CLASSES == covered


def _feed(det: Detector, inputs: Callable[[int], tuple], start: int, n: int) -> None:
    for i in range(start, start + n):
        det.update(*inputs(i))


N = 2000


def _assert_one_verdict(det: Detector, results: tuple[DetectorResult, ...]) -> None:
    """A row's ``drift`` is the verdict of its (detector, feature, window) -- the segment is the
    detector instance's -- so no statistic row claims drift the verdict denies."""
    verdicts = det.verdicts
    with pytest.raises(TypeError):
        verdicts["x"] = True  # type: ignore[index]
    assert set(verdicts) == {r.feature for r in results}
    for r in results:
        assert r.drift is verdicts[r.feature], r
        assert isinstance(r.exceeded, bool), r
    if not det.drift_detected:
        assert not any(r.drift for r in results), results


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_contract(name: str):
    make, inputs_for = FACTORIES[name]
    det = make()
    assert det.drift_detected is False
    with pytest.raises(AttributeError):
        det.drift_detected = True  # type: ignore[misc]

    # Save half-way, restore into a fresh detector, feed both the same rest: same results.
    inputs = inputs_for(random.Random(7))
    _feed(det, inputs, 0, N // 2)
    blob = json.dumps(det.get_state())
    twin = make()
    twin.set_state(json.loads(blob))
    rest = [inputs(i) for i in range(N // 2, N)]
    for args in rest:
        det.update(*args)
        twin.update(*args)
    results = det.close_window()
    assert results == twin.close_window()
    assert det.drift_detected is twin.drift_detected is True, results
    _assert_one_verdict(det, results)
    assert any(verdict for verdict in det.verdicts.values())

    assert results and all(isinstance(r, DetectorResult) for r in results)
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].value = 0.0  # type: ignore[misc]
    assert all(not isinstance(v, (dict, list)) for r in results for _, v in r.details)

    # reset(): back to a fresh detector's behaviour.
    det.reset()
    assert det.drift_detected is False
    assert dict(det.verdicts) == {}
    fresh = make()
    again = inputs_for(random.Random(8))
    for i in range(300):
        args = again(i)
        det.update(*args)
        fresh.update(*args)
    quiet = det.close_window()
    assert quiet == fresh.close_window()
    _assert_one_verdict(det, quiet)
    assert det.get_state() == fresh.get_state()


def test_detector_result_init_takes_the_fields():
    """DetectorResult writes its fields itself (faster than the generated __init__): the two lists
    must stay the same, defaults included, and the result must stay frozen and comparable."""
    import inspect

    params = list(inspect.signature(DetectorResult.__init__).parameters.values())[1:]
    fields = dataclasses.fields(DetectorResult)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [inspect.Parameter.empty if f.default is dataclasses.MISSING
                                           else f.default for f in fields]
    r = DetectorResult("d", "f", "s", 0.5, None, 0.1, True, 10, 20)
    assert r.exceeded is True and r.details == ()
    assert DetectorResult("d", "f", "s", 0.5, None, 0.1, True, 10, 20, exceeded=False).exceeded is False
    assert r == DetectorResult("d", "f", "s", 0.5, None, 0.1, True, 10, 20) and hash(r) == hash(dataclasses.replace(r))
    assert dataclasses.replace(r, details=(("k", 1),)).details == (("k", 1),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 1.0  # type: ignore[misc]
