"""detectors/estimate_stream.py in the engine (no broker, no store): per-window CBPE estimates with
bands and verdicts, graded as delayed labels arrive; a covariate shift moves the estimate, a
concept shift only the realised value (and the estimation error shows it); a restart keeps the
fitted estimator, including one fitted on the stream's first labelled predictions."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.estimate_fit import fit_estimator
from driftline.detectors.reference import from_events
from tests.detectors.detector_streams import label, prediction, uid

WINDOW = 1000
DELAY_S = 1500.0  # labels arrive 1.5 windows after their prediction (one event per second)
SHARE = 0.4  # and only for 40 % of the predictions


def _score(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-2.0 * x))


def _rows(n: int, seed: int, *, spread: float = 1.0, flip: float = 0.0) -> list[tuple[float, float, int]]:
    """(x, P(y=1), y): calibrated scores; ``spread`` < 1 is a covariate shift towards the
    uncertain middle (the accuracy falls and CBPE can see it), ``flip`` a concept shift (labels
    flipped: P(y | x) changes and the scores cannot show it)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = rng.gauss(0.0, spread)
        p = _score(x)
        y = int(rng.random() < p)
        if rng.random() < flip:
            y = 1 - y
        out.append((x, p, y))
    return out


def _events(rows: list[tuple[float, float, int]], seed: int = 1) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    evs = []
    for i, (x, p, y) in enumerate(rows):
        evs.append((float(i), "p", prediction(i, {"x": x}, {"0": 1 - p, "1": p}, t=float(i))))
        if rng.random() < SHARE:
            evs.append((i + DELAY_S, "l", label(i, uid(i), y, t=i + DELAY_S)))
    evs.sort(key=lambda e: e[0])
    return [(k, ev) for _, k, ev in evs]


def _config(**estimation) -> DetectorsConfig:
    return DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": WINDOW}, "min_samples": 100,
        "data_drift": {"enabled": False}, "prediction_drift": {"enabled": False},
        "multivariate": {"enabled": False}, "quality": {"enabled": False},
        "concept": {"detectors": ["adwin"]},
        "performance_estimation": {"thresholds": {"accuracy": 0.7}, **estimation}})


@pytest.fixture(scope="module")
def reference():
    ref_rows = _rows(3000, seed=7)
    info = fit_estimator([{"0": 1 - p, "1": p} for _, p, _ in ref_rows], [y for *_, y in ref_rows])
    events = [prediction(10**6 + i, {"x": x}, {"0": 1 - p, "1": p}) for i, (x, p, _) in enumerate(ref_rows)]
    return dataclasses.replace(from_events(events, "m", "v1"), estimator=info)


def _run(eng: DetectorEngine, evs: list[tuple[str, dict]]) -> None:
    for kind, ev in evs:
        (eng.observe_prediction if kind == "p" else eng.observe_label)(ev)


def _final(rows) -> dict[tuple[str, str], object]:
    """The last row of each (window, metric): what ``FINAL`` reads."""
    out = {}
    for r in rows:
        out[(r.window_start.isoformat(), r.metric)] = r
    return out


def _accuracy(rows) -> list:
    return [r for (_, m), r in sorted(_final(rows).items()) if m == "accuracy"]


def test_covariate_shift_lowers_the_estimate_and_labels_grade_it(reference):
    eng = DetectorEngine(_config(), references={("m", "v1"): reference})
    stream = _rows(3 * WINDOW, seed=1) + _rows(3 * WINDOW, seed=2, spread=0.25)
    evs = _events(stream)
    cut = next(i for i, (k, ev) in enumerate(evs) if k == "p" and ev["event_id"] == uid(4 * WINDOW))
    _run(eng, evs[:cut])
    rows = eng.poll_estimates()
    early = _accuracy(rows)
    _run(eng, evs[cut:])
    eng.flush()  # grades the windows whose labels came after the last close
    late = _accuracy(rows + eng.poll_estimates())

    # At close, before its labels: the shifted window's estimate is already low, its whole band
    # under the 0.7 floor, so it has a verdict; the stationary ones are near 0.76 without one.
    assert len(early) == 4
    assert all(r.realised is None and r.labelled == 0 for r in early[3:])
    assert early[3].upper < 0.7 and early[3].verdict
    assert all(0.72 < r.estimate < 0.80 and not r.verdict for r in early[:3])
    # Graded once the labels came: about 40 % labelled, the realised accuracy inside the band.
    assert len(late) == 6
    assert all(abs(r.labelled_share - SHARE) < 0.06 and r.realised is not None for r in late)
    covered = sum(r.lower <= r.realised <= r.upper for r in late)
    assert covered >= 5, [(r.lower, r.realised, r.upper) for r in late]
    assert all(r.verdict for r in late[3:]) and not any(r.verdict for r in late[:3])
    assert all(r.realised < 0.66 for r in late[3:])


def test_concept_shift_moves_the_realised_value_and_the_estimation_error_shows_it(reference):
    eng = DetectorEngine(_config(), references={("m", "v1"): reference})
    stream = _rows(2 * WINDOW, seed=3) + _rows(3 * WINDOW + WINDOW // 2, seed=4, flip=0.35)
    _run(eng, _events(stream))
    rows = eng.flush()
    final = _accuracy(eng.poll_estimates())
    # The scores did not move: neither did the estimate, nor any verdict; the labels did.
    assert all(0.72 < r.estimate < 0.80 and not r.verdict for r in final)
    assert all(r.realised < 0.65 for r in final[2:]) and all(r.realised > 0.7 for r in final[:2])
    errors = [r for r in rows if r.detector == "estimation" and r.statistic == "estimation_error"
              and r.feature == "accuracy"]
    # The last written error is the mean over every graded window: 2 good, 4 off by ~0.2.
    assert errors and 0.08 < errors[-1].value < 0.2 and errors[-1].current_size == 6


def test_restart_keeps_the_estimator_fitted_on_the_stream():
    # No estimator in the reference: the first 400 labelled predictions fit one.
    cfg = _config(reference_labels=400, min_labels=200)
    ref = from_events([prediction(10**6 + i, {"x": x}, {"0": 1 - p, "1": p})
                       for i, (x, p, _) in enumerate(_rows(2000, seed=7))], "m", "v1")
    evs = _events(_rows(6 * WINDOW, seed=5))
    half = len(evs) // 2

    whole = DetectorEngine(_config(reference_labels=400, min_labels=200), references={("m", "v1"): ref})
    _run(whole, evs)
    whole.flush()
    expected = _final(whole.poll_estimates())

    first = DetectorEngine(cfg, references={("m", "v1"): ref})
    _run(first, evs[:half])
    assert first.monitors["m"].estimation.fitted["v1"]["method"] == "cbpe"
    got = first.poll_estimates()
    blob = first.state_for("m")
    second = DetectorEngine(cfg, references={("m", "v1"): ref})
    second.load_model_state("m", blob)
    assert second.monitors["m"].estimation.fitted["v1"] == first.monitors["m"].estimation.fitted["v1"]
    _run(second, evs[half:])
    second.flush()
    got += second.poll_estimates()
    # Same estimates, bands, verdicts and grades as without the restart.
    assert expected and _final(got) == expected
    assert any(r.realised is not None for r in expected.values())


def test_each_judged_metric_is_a_test_of_the_alarm_budget_and_bad_scores_are_told_once(reference, caplog):
    def budget_tests(thresholds) -> list[int]:
        cfg = DetectorsConfig.from_mapping({
            "model": "m", "window": {"kind": "count", "size": WINDOW}, "min_samples": 100,
            "prediction_drift": {"enabled": False}, "multivariate": {"enabled": False},
            "concept": {"enabled": False}, "performance_estimation": {"thresholds": thresholds}})
        eng = DetectorEngine(cfg, references={("m", "v1"): reference})
        _run(eng, [e for e in _events(_rows(2 * WINDOW, seed=6)) if e[0] == "p"])
        return [dict(json.loads(r.details))["tests"] for r in eng.poll() if r.statistic == "alarm_budget"]

    plain, judged = budget_tests({}), budget_tests({"accuracy": 0.7, "f1": 0.6, "mae": 1.0})
    # Two judged metrics (mae is not a classifier's) in one segment: two more tests per window.
    assert len(plain) == 2 and [j - p for j, p in zip(judged, plain)] == [2, 2]

    eng = DetectorEngine(_config(), references={("m", "v1"): reference})
    bad = [("p", prediction(i, {"x": 0.0}, "1", t=float(i))) for i in range(2 * WINDOW)]  # labels, no scores
    _run(eng, bad)
    told = [r for r in eng.poll() if r.detector == "estimation" and r.statistic == "excluded"]
    assert [json.loads(r.details)["reason"] for r in told] == ["the logged predictions are not class probabilities"]
    assert sum("no performance estimate" in m for m in caplog.messages) == 1
    assert eng.poll_estimates() == []


# -- DLE fitted on the stream: a regressor's first labelled predictions, features joined ----------
def _regression(n: int, seed: int, *, start: int = 0, bad_labels: bool = False) -> list[tuple[str, dict]]:
    """A regressor whose error grows with |x| (what DLE's loss model learns from the features),
    labelled like :func:`_events` (40 %, 1.5 windows late); ``bad_labels``: text labels."""
    rng = random.Random(seed)
    evs = []
    for i in range(start, start + n):
        x, z = rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)
        pred = 2.0 * x + z
        y = pred + rng.gauss(0.0, 0.5 + abs(x))
        evs.append((float(i), "p", prediction(i, {"x": x, "z": z, "plan": "a"}, pred, t=float(i))))
        if rng.random() < SHARE:
            evs.append((i + DELAY_S, "l", label(i, uid(i), "high" if bad_labels else y, t=i + DELAY_S)))
    evs.sort(key=lambda e: e[0])
    return [(k, ev) for _, k, ev in evs]


def test_dle_fitted_on_the_stream_estimates_mae_and_rmse_and_survives_a_restart():
    cfg = _config(reference_labels=300, min_labels=200, thresholds={"mae": 5.0})
    evs = _regression(5 * WINDOW, seed=8)
    whole = DetectorEngine(cfg, references={})
    _run(whole, evs)
    whole.flush()
    expected = _final(whole.poll_estimates())

    first = DetectorEngine(cfg, references={})
    half = len(evs) // 2
    _run(first, evs[:half])
    fitted = first.monitors["m"].estimation.fitted["v1"]
    # Fitted on the joined features (the numeric ones) + prediction; the join keeps features
    # only until then: the predictions made since wait for their labels without them.
    assert fitted["method"] == "dle" and fitted["features"] == ["x", "z"] and fitted["labelled"] == 300
    assert fitted["source"] == "stream:first_labelled=300"
    pending = sorted(first.monitors["m"].pending_preds.get_state()["items"], key=lambda e: e[1])
    assert len(pending[0][2]) == 4 and len(pending[-1][2]) == 3
    got = first.poll_estimates()
    second = DetectorEngine(cfg, references={})
    second.load_model_state("m", first.state_for("m"))
    assert second.monitors["m"].estimation.fitted["v1"] == fitted
    _run(second, evs[half:])
    second.flush()
    got += second.poll_estimates()
    assert expected and _final(got) == expected
    rows = list(expected.values())
    assert {r.metric for r in rows} == {"mae", "rmse"} and {r.method for r in rows} == {"dle"}
    graded = [r for r in rows if r.realised is not None and r.estimate is not None]
    assert len(graded) >= 4
    # MAE ~1.04 and RMSE ~1.4 on this noise; a loss model from 300 rows gets within 0.15 of it
    assert all(abs(r.estimate - r.realised) < 0.15 for r in graded), graded


def test_dle_on_the_stream_with_unusable_or_too_few_labels_is_told_once(caplog):
    eng = DetectorEngine(_config(reference_labels=300, min_labels=200), references={})
    _run(eng, _regression(3 * WINDOW, seed=9, bad_labels=True))
    told = [json.loads(r.details)["reason"] for r in eng.flush() if r.statistic == "excluded"]
    assert len(told) == 1 and told[0].startswith("no estimator from the first 300 labelled predictions: "
                                                 "the predictions are neither class probabilities"), told
    assert eng.poll_estimates() == []

    # Numeric labels but a third of them missing (null): fewer labelled rows than min_labels.
    evs = [(k, {**ev, "label": None} if k == "l" and int(ev["event_id"][-12:], 16) % 3 == 0 else ev)
           for k, ev in _regression(3 * WINDOW, seed=9)]
    eng = DetectorEngine(_config(reference_labels=300, min_labels=250), references={})
    _run(eng, evs)
    told = [json.loads(r.details)["reason"] for r in eng.flush() if r.statistic == "excluded"]
    assert len(told) == 1 and "DLE needs at least 250" in told[0], told


# -- the grading state is bounded -----------------------------------------------------------------
def test_windows_awaiting_labels_hold_at_most_grade_max_rows_and_evictions_are_counted(reference, caplog):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    evs = _events(_rows(5 * WINDOW, seed=10))
    free = DetectorEngine(_config(), references={("m", "v1"): reference})
    _run(free, evs)
    free.flush()
    want = _accuracy(free.poll_estimates())

    cfg = _config(grade_max_rows=300)
    eng = DetectorEngine(cfg, references={("m", "v1"): reference})
    grading = eng.monitors["m"].estimation.grading
    most, rows = 0, []
    for i, (kind, ev) in enumerate(evs):
        _run(eng, [(kind, ev)])
        eng.monitors["m"].estimation.flush()  # the buffered labels in their windows (estimate_batch)
        most = max(most, grading.rows)
        if i == len(evs) // 2:  # a restart keeps the windows, what they hold and the count
            rows += eng.poll_estimates()
            before = eng.counts("m")["grading_evicted"]
            blob = eng.state_for("m")
            reg = CollectorRegistry()
            eng = DetectorEngine(cfg, references={("m", "v1"): reference}, registry=reg)
            eng.load_model_state("m", blob)
            grading = eng.monitors["m"].estimation.grading
            assert eng.counts("m")["grading_evicted"] == before >= 1
    eng.flush()
    got = _accuracy(rows + eng.poll_estimates())

    # ~400 labels per window, 1.5 windows late: past 300 a window stops awaiting. The state never
    # holds more than the cap.
    assert most == 300
    evicted = eng.counts("m")["grading_evicted"]
    assert evicted == 5 and len(got) == len(want) == 5
    assert sum("stopped awaiting labels" in m for m in caplog.messages) >= 2
    # The estimates are those of an unbounded run; an evicted window was graded with the labels it
    # had (fewer, still a realised value), and no later label changed it.
    assert [(r.estimate, r.lower, r.upper) for r in got] == [(r.estimate, r.lower, r.upper) for r in want]
    assert all(g.labelled == 301 < w.labelled and g.realised is not None for g, w in zip(got, want))
    # Exported like the label join's evictions: a counter per model, its total across the restart.
    series = {(s.name, s.labels.get("model")): s.value
              for f in text_string_to_metric_families(generate_latest(reg).decode()) for s in f.samples}
    assert series[("driftline_estimation_grading_evicted_total", "m")] == evicted
