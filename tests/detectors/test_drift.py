"""Data drift through the engine on synthetic streams with known change points."""

from __future__ import annotations

import json
import random

import pytest

from driftline.detectors.base import STAT_ALARM_BUDGET
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import from_events
from tests.detectors.detector_streams import base_features, features_stream

WINDOW = 1000
CHANGE = 10_000


def _engine(**over) -> DetectorEngine:
    doc = {"model": "m", "window": {"kind": "count", "size": WINDOW}, "min_samples": 200,
           "concept": {"enabled": False}, **over}
    eng = DetectorEngine(DetectorsConfig.from_mapping(doc))
    ref_events = features_stream(5000, 10**9, base_features, base_features, seed=99, start=10**6)
    eng.set_reference(from_events(ref_events, "m", "v1"))
    return eng


def _verdicts(rows) -> dict[int, set[str]]:
    """window index -> features whose verdict test flagged drift."""
    out: dict[int, set[str]] = {}
    starts = sorted({r.window_start for r in rows})
    for r in rows:
        if r.detector == "data_drift" and r.feature != "*":
            w = starts.index(r.window_start)
            out.setdefault(w, set())
            if r.drift and json.loads(r.details)["verdict"]:
                out[w].add(r.feature)
    return out


def _run(after, change=CHANGE, n=20_000, **over):
    eng = _engine(**over)
    for ev in features_stream(n, change, base_features, after, seed=1):
        eng.observe_prediction(ev)
    return _verdicts(eng.poll())


def _shifted(rng: random.Random) -> dict:
    f = base_features(rng)
    f["x"] += 0.5
    return f


def _wider(rng: random.Random) -> dict:
    f = base_features(rng)
    f["y"] = 10 + (f["y"] - 10) * 2.0
    return f


def _mix(rng: random.Random) -> dict:
    f = base_features(rng)
    f["plan"] = rng.choices("abc", (0.3, 0.3, 0.4))[0]
    return f


@pytest.mark.parametrize("after,feature", [(_shifted, "x"), (_wider, "y"), (_mix, "plan")],
                         ids=["mean_shift", "variance_change", "category_mix"])
def test_change_is_detected_after_and_not_before(after, feature):
    verdicts = _run(after)
    assert len(verdicts) == 20
    first = CHANGE // WINDOW
    assert all(not verdicts[w] for w in range(first)), verdicts  # nothing before the change
    for w in range(first, 20):
        assert verdicts[w] == {feature}, (w, verdicts[w])  # the changed feature, only it


def test_change_inside_a_window_is_flagged_no_earlier_than_that_window():
    verdicts = _run(_shifted, change=10_500)
    flagged = [w for w, f in verdicts.items() if f]
    assert min(flagged) in (10, 11) and all(w >= 10 for w in flagged)


def test_ks_with_bonferroni_detects_too_and_reports_adjusted_p_values():
    eng = _engine(data_drift={"calibration": "fixed", "verdict_numeric": "ks", "correction": "bonferroni"})
    for ev in features_stream(4000, 2000, base_features, _shifted, seed=3):
        eng.observe_prediction(ev)
    rows = [r for r in eng.poll() if r.statistic == "ks" and r.feature == "x"]
    assert [r.drift for r in rows] == [False, False, True, True]
    d = json.loads(rows[-1].details)
    assert rows[-1].p_value >= d["raw_p_value"] and d["correction"] == "bonferroni"


def test_stationary_stream_raises_no_alarm():
    eng = _engine()
    windows = 60
    for ev in features_stream(windows * WINDOW, 10**9, base_features, base_features, seed=5):
        eng.observe_prediction(ev)
    rows = eng.poll()
    verdict_alarms = [r for r in rows if r.detector in ("data_drift", "prediction_drift") and r.drift
                      and r.feature != "*" and json.loads(r.details)["verdict"]]
    quality_alarms = [r for r in rows if r.detector == "quality" and r.drift]
    # 60 windows x 5 features: the false-alarm rate of the verdicts is 0 / 300.
    assert verdict_alarms == [] and quality_alarms == []
    assert len({r.window_start for r in rows}) == windows


def test_min_samples_withholds_verdicts():
    eng = _engine(min_samples=5000)
    for ev in features_stream(2000, 0, base_features, _shifted, seed=1):
        eng.observe_prediction(ev)
    # Only the model's alarm budget: no feature is judged on too few values.
    assert {r.statistic for r in eng.poll() if r.detector == "data_drift"} == {STAT_ALARM_BUDGET}


def test_prediction_drift_and_confidence_rows():
    eng = DetectorEngine(DetectorsConfig.from_mapping(
        {"model": "m", "window": {"size": 500}, "min_samples": 100, "concept": {"enabled": False}}))
    rng = random.Random(0)

    def ev(i, p_yes):
        from tests.detectors.detector_streams import prediction
        s = min(0.99, max(0.01, rng.gauss(p_yes, 0.1)))
        return prediction(i, {"x": rng.gauss(0, 1)}, {"yes": s, "no": 1 - s})

    eng.set_reference(from_events([ev(10**6 + i, 0.8) for i in range(3000)], "m", "v1"))
    for i in range(1000):
        eng.observe_prediction(ev(i, 0.8 if i < 500 else 0.55))
    rows = [r for r in eng.poll() if r.detector == "prediction_drift"]
    conf = [r for r in rows if r.feature == "confidence" and r.statistic == "mean"]
    assert len(conf) == 2 and conf[0].value > conf[1].value + 0.1
    assert not conf[0].drift and conf[1].drift
    assert {r.feature for r in rows} >= {"prediction", "confidence", "entropy"}


@pytest.mark.parametrize("features", [1, 3, 300])
@pytest.mark.parametrize("odd", ["none", "nan", "inf", "ints"])
def test_histogram_set_update_many_equals_update_one_by_one_to_the_last_bit(features: int, odd: str) -> None:
    """The columnar path (every feature's bins side by side) counts and sums as ``update`` does,
    value by value: the same bins, the same float rounding, NaN as missing."""
    from driftline.detectors.drift import HistogramSet
    from driftline.detectors.histogram import profile_numeric

    rng = random.Random(features)
    names = [f"f{k}" for k in range(features)]
    profiles = {n: profile_numeric(n, [rng.gauss(0, 1 + k) for _ in range(400)], bins=10) for k, n in enumerate(names)}
    rows = [{n: rng.gauss(0.3, 1.5 + k) for k, n in enumerate(names)} for _ in range(700)]
    for i in range(0, 700, 37):
        name = names[i % features]
        rows[i][name] = {"none": rows[i][name], "nan": float("nan"), "inf": (-1) ** i * float("inf"),
                         "ints": rng.randrange(-5, 5) * 10**rng.randrange(0, 20)}[odd]
    one, many = HistogramSet(profiles), HistogramSet(profiles)
    for r in rows:
        one.update(r)
    for i in range(0, 700, 350):
        many.update_many(rows[i:i + 350])
    assert many._columns is not None  # the columnar path ran
    assert many.events == one.events == 700
    for n in names:
        a, b = one.hists[n], many.hists[n]
        assert (a.counts, a.missing) == (b.counts, b.missing)
        assert repr(a.sums) == repr(b.sums)  # bit for bit (repr: inf and NaN compare as text)
