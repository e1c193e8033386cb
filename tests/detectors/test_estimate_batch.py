"""detectors/estimate_batch.py: predictions and labels buffered and put in their windows in batches
give what one event at a time gives (``EstimationStreams.batched = False``), repr for repr: every
``performance_estimates`` row, every estimation ``drift_metrics`` row, the join counters and the
log lines, on streams with segments, several versions (one without a reference), predictions that
are not probabilities, labels of every type (and missing), labels before their predictions, a
small sample and grading cap that evict, time windows, a multiclass model, an estimator fitted on
the stream; fed one event at a time, with ``observe_many``, through a restart, and applying the
buffer after every few events."""

from __future__ import annotations

import dataclasses
import logging
import math
import random

import pytest

from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.estimate_fit import Fitted, fit_estimator, positive_score
from driftline.detectors.estimate_stream import EstimationStreams
from driftline.detectors.reference import from_events
from tests.detectors.detector_streams import label, prediction, uid
from tests.detectors.test_estimate_stream import _events, _rows


def _reference(version: str = "v1", seed: int = 7):
    rows = _rows(2000, seed=seed)
    info = fit_estimator([{"0": 1 - p, "1": p} for _, p, _ in rows], [y for *_, y in rows])
    evs = [prediction(10**6 + i, {"x": x}, {"0": 1 - p, "1": p}) for i, (x, p, _) in enumerate(rows)]
    return dataclasses.replace(from_events(evs, "m", version), estimator=info)


def _config(estimation: dict | None = None, *, window: dict | None = None, tags: list[str] | None = None):
    return DetectorsConfig.from_mapping({
        "model": "m", "window": window or {"kind": "count", "size": 500}, "min_samples": 50,
        "data_drift": {"enabled": False}, "prediction_drift": {"enabled": False},
        "multivariate": {"enabled": False}, "quality": {"enabled": False},
        "concept": {"detectors": ["adwin"]}, "segments": {"tags": tags or []},
        "performance_estimation": estimation or {}})


def _vary(evs, seed: int, *, tags=False, versions=(), bad=0.0, labels=None, early=False):
    """The stream with tags, versions, bad scores, labels of other types, some labels first."""
    rng = random.Random(seed)
    out = []
    for kind, ev in evs:
        ev = dict(ev)
        if kind == "p":
            if tags:
                ev["tags"] = {"region": rng.choice(["eu", "us", "ap"])}
            if versions:
                ev["model_version"] = rng.choice(versions)
            if rng.random() < bad:
                ev["prediction"] = rng.choice([{"0": 0.5, "1": 0.7}, {"0": 1, "1": 0}, "no",
                                               {"0": float("nan"), "1": 0.5}, {"0": 0.25, "1": True}])
        elif labels == "mixed":
            ev["label"] = rng.choice([str, int, float, lambda y: None, lambda y: "maybe"])(ev["label"])
        out.append((kind, ev))
    if early:  # a label now and then before its prediction
        for i in range(0, len(out) - 3, 7):
            if out[i + 2][0] == "l":
                out[i], out[i + 2] = out[i + 2], out[i]
    return out


def _multiclass():
    def rows(n: int, seed: int):
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            e = [math.exp(rng.gauss(0, 1)) for _ in range(3)]
            p = {c: v / sum(e) for c, v in zip("abc", e)}
            out.append((p, rng.choices("abc", list(p.values()))[0]))
        return out

    ref_rows = rows(2000, 1)
    info = fit_estimator([p for p, _ in ref_rows], [y for _, y in ref_rows])
    ref = dataclasses.replace(from_events([prediction(10**6 + i, {"x": 0.0}, p) for i, (p, _) in enumerate(ref_rows)],
                                          "m", "v1"), estimator=info)
    evs = []
    rng = random.Random(2)
    for i, (p, y) in enumerate(rows(3000, 3)):
        evs.append((float(i), "p", prediction(i, {"x": 0.0}, p, t=float(i))))
        if rng.random() < 0.4:
            evs.append((i + 700.0, "l", label(i, uid(i), y, t=i + 700.0)))
    evs.sort(key=lambda e: e[0])
    return ref, [(k, ev) for _, k, ev in evs]


def _cases():
    base = _events(_rows(4000, seed=1))
    ref = _reference()
    refs = {("m", "v1"): ref}
    mc_ref, mc = _multiclass()
    return {
        "thresholds": (_config({"thresholds": {"accuracy": 0.8}, "max_drop": {"f1": 0.02}}), refs, base),
        "segments": (_config({"thresholds": {"accuracy": 0.8}}, tags=["region"]), refs, _vary(base, 1, tags=True)),
        "versions": (_config(), {**refs, ("m", "v2"): _reference("v2", seed=8)},
                     _vary(base, 2, versions=("v1", "v2", "v3"))),
        "star": (_config(), {("m", "*"): dataclasses.replace(ref, model_version="*")}, _vary(base, 3, versions=("a", "b"))),
        "bad_scores_and_labels": (_config({"thresholds": {"accuracy": 0.8}}), refs,
                                  _vary(base, 4, bad=0.05, labels="mixed", early=True)),
        "evicting": (_config({"sample": 120, "grade_max_rows": 300, "grade_windows": 3}, tags=["region"]), refs,
                     _vary(base, 5, tags=True, early=True)),
        "time_windows": (_config({"thresholds": {"accuracy": 0.8}}, window={"kind": "time", "duration_s": 450}),
                         refs, _vary(base, 6, early=True)),
        "multiclass": (_config({"thresholds": {"accuracy": 0.5}}), {("m", "v1"): mc_ref}, mc),
        # labels of the predictions made before the fit open windows (none was open): in the
        # order they came among the predictions of the batch
        "fitted_on_the_stream": (_config({"reference_labels": 300}, tags=["region"]),
                                 {("m", "v1"): dataclasses.replace(ref, estimator=None)}, _vary(base, 7, tags=True)),
    }


CASES = _cases()


def _run(cfg, refs, evs, how: str) -> list[str]:
    eng = DetectorEngine(cfg, references=refs)
    out: list = []
    if how == "many":
        for i in range(0, len(evs), 300):
            eng.observe_many([ev for _, ev in evs[i:i + 300]])
    else:
        for i, (kind, ev) in enumerate(evs):
            (eng.observe_prediction if kind == "p" else eng.observe_label)(ev)
            if how == "flush" and i % 5 == 0:
                eng.monitors["m"].estimation.flush()
            if how == "restart" and i == len(evs) // 2 + 3:
                out += eng.poll_estimates() + [r for r in eng.poll() if r.detector == "estimation"]
                blob = eng.state_for("m")
                eng = DetectorEngine(cfg, references=refs)
                eng.load_model_state("m", blob)
    out += [r for r in eng.flush() if r.detector == "estimation"]
    out += eng.poll_estimates()
    return [repr(r.as_tuple()) for r in out] + [repr(eng.counts("m"))]


@pytest.mark.parametrize("how", ["single", "many", "restart", "flush"])
@pytest.mark.parametrize("case", list(CASES))
def test_batches_give_what_one_event_at_a_time_gives(case: str, how: str, monkeypatch, caplog) -> None:
    cfg, refs, evs = CASES[case]
    caplog.set_level(logging.WARNING, logger="driftline.detectors.estimate_stream")
    got = _run(cfg, refs, evs, how)
    told = [r.getMessage() for r in caplog.records]
    caplog.clear()
    monkeypatch.setattr(EstimationStreams, "batched", False)
    want = _run(cfg, refs, evs, how)
    assert got == want
    assert told == [r.getMessage() for r in caplog.records]
    assert len(want) > 20  # rows were written (not a vacuous match)


def test_every_case_exercises_what_it_names() -> None:
    rows = {case: _run(*CASES[case], "single") for case in ("bad_scores_and_labels", "evicting", "segments")}
    assert any("not class probabilities" in r for r in rows["bad_scores_and_labels"])
    assert "'grading_evicted': 0" not in rows["evicting"][-1]
    assert any("'region=eu'" in r for r in rows["segments"])


def test_scores_as_arrays_equal_the_score_of_each() -> None:
    """Fitted.score_many (a binary model's dicts of floats checked as arrays) against score()."""
    fitted = Fitted(fit_estimator([{"n": 1 - p, "y": p} for p in (0.1, 0.9, 0.3, 0.8) * 60],
                                  ["n", "y", "y", "y"] * 60, min_labels=100))
    rng = random.Random(0)
    good = [{"n": 1 - (p := rng.random()), "y": p} for _ in range(300)]
    odd = [{"n": 0.3, "y": 0.705}, {"n": 0.3, "y": 0.72}, {"n": 1e-10, "y": 1.0}, {"n": -2e-9, "y": 1.0},
           {"n": 0.0, "y": 1 + 2e-9}, {"n": float("nan"), "y": 0.5}, {"n": 0.5, "y": float("inf")},
           {"n": 0, "y": 1}, {"n": 0.25, "y": 1}, {"n": True, "y": 0.0}, {"y": 1.0}, {"n": 1.0}, {},
           {"n": "0.5", "y": 0.5}, [0.4, 0.6], 0.7, '{"n": 0.2, "y": 0.8}', None, {"n": 0.0, "y": 1.0}]
    for preds in (good, good[:1], [{"n": 0.0, "y": 1.0}] * 3, *([*good[:50], o] for o in odd), good + odd):
        rows, complete = fitted.score_many(preds)
        want = [positive_score(p, ["n", "y"]) for p in preds]
        assert [repr(r) for r in rows] == [repr(w) for w in want]
        assert [type(r) for r in rows] == [type(w) for w in want]
        assert complete == (None not in want)


def test_a_window_a_label_opens_keeps_its_place_among_those_predictions_open(monkeypatch) -> None:
    """A label whose prediction got no window (no estimator then) opens one; a prediction after it
    in the same batch, of another segment, opens its own after it, as one event at a time."""
    from driftline.detectors.config import ModelConfig

    def run() -> list[str]:
        streams = EstimationStreams(ModelConfig.model_validate({"model": "m"}))
        refs = {"v": _reference("v")}
        p = {"0": 0.4, "1": 0.6}
        streams.observe("v", [""], {"prediction": p}, refs)
        streams.labelled("v", ["", "region=eu"], p, 0.0, "1", refs)
        streams.observe("v", ["", "region=us"], {"prediction": p}, refs)
        streams.labelled("v", ["", "region=ap"], p, 0.0, "0", refs)
        streams.flush()
        return [f"{k} {w.n} {w.rows} {w.labelled} {w.labels}" for k, w in streams.open.items()]

    got = run()
    monkeypatch.setattr(EstimationStreams, "batched", False)
    assert got == run()
    assert [g.split()[0] for g in got] == ["v|", "v|region=eu", "v|region=us", "v|region=ap"]


def test_a_binary_windows_rows_as_an_array_equal_asarray() -> None:
    """Fitted._scores reads float rows with np.fromiter: asarray's numbers; rows that are lists
    (a state saved before the float rows), or both kinds, take asarray's way as before."""
    import numpy as np

    fitted = Fitted(fit_estimator([{"n": 1 - p, "y": p} for p in (0.1, 0.9, 0.3, 0.8) * 60],
                                  ["n", "y", "y", "y"] * 60, min_labels=100))
    for rows in ([0.25, 0.5, 1.0], [], [0.5, 1, True, float("nan")], [[0.2], [0.7]], [0.2, [0.7]]):
        got = fitted._scores(rows)
        try:
            want = np.asarray(rows, dtype=float)
            want = want[:, 0] if want.ndim == 2 else want
        except ValueError:
            want = [r if type(r) is float else r[0] for r in rows]
        assert type(got) is type(want) and np.array_equal(np.asarray(got), np.asarray(want), equal_nan=True)
