"""detectors/engine.py: restart with state, segments, time windows, Prometheus, robustness, and the
collector's batched path (``observe_many``) equal to one call per event, bit for bit."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import from_events
from driftline.detectors.journal import inflate
from tests.detectors.detector_streams import base_features, engine_state, features_stream, label, prediction, uid

CFG = {"model": "m", "window": {"kind": "count", "size": 500}, "min_samples": 100,
       "concept": {"detectors": ["adwin", "ddm", "kswin", "page_hinkley"]},
       "multivariate": {"enabled": True, "sample_size": 200},
       "segments": {"tags": ["region"], "max_segments": 3},
       "ab": {"enabled": True, "control": "A"}}


def _events(n: int, seed: int = 0):
    """Predictions (with a shift half-way), shadows, labels and outcomes, interleaved."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        f = base_features(rng)
        if i > n // 2:
            f["x"] += 1.0
        arm = "A" if i % 2 else "B"
        p = {"1": (s := rng.random()), "0": 1 - s}
        out.append(("p", prediction(i, f, p, t=i, variant=arm, request_id=f"r{i}",
                                    tags={"region": rng.choice(["eu", "us", "ap", "sa", "af"])},
                                    latency_ms=5.0)))
        if i % 3 == 0:
            out.append(("p", prediction(i, f, p if rng.random() < 0.9 else {"1": 1 - s, "0": s},
                                        t=i + 0.1, variant="shadow", version="v2", request_id=f"r{i}")))
        if i % 2 == 0:
            out.append(("l", label(i, uid(i), int(rng.random() < s), t=i + 5)))
        out.append(("o", {"schema_version": 1, "type": "outcome", "event_id": uid(i, 3), "timestamp": f"2026-11-24T00:00:00Z",
                          "model": "m", "request_id": f"r{i}", "name": "conversion",
                          "value": float(rng.random() < (0.1 if arm == "A" else 0.2))}))
    return out


def _feed(eng, evs):
    for kind, ev in evs:
        {"p": eng.observe_prediction, "l": eng.observe_label, "o": eng.observe_outcome}[kind](ev)


def _engine(registry=None):
    eng = DetectorEngine(DetectorsConfig.from_mapping(CFG), registry=registry, clock=lambda: 0.0)
    rng = random.Random(9)
    ref = [prediction(10**6 + i, base_features(rng), {"1": (s := rng.random()), "0": 1 - s}) for i in range(3000)]
    eng.set_reference(from_events(ref, "m", "*"))
    return eng


def test_restart_mid_stream_gives_identical_results():
    evs = _events(3000)
    cut = 1234  # mid-window, with joins, shadow pairs and outcomes pending
    straight = _engine()
    _feed(straight, evs)
    expected = straight.flush()

    first = _engine()
    _feed(first, evs[:cut])
    early = first.poll()
    blob = first.state_for("m")
    assert isinstance(blob, bytes)
    second = DetectorEngine(DetectorsConfig.from_mapping(CFG), clock=lambda: 0.0)
    second.load_model_state("m", blob)
    _feed(second, evs[cut:])
    got = early + second.flush()
    assert got == expected
    detectors = {r.detector for r in expected}
    assert {"data_drift", "quality", "prediction_drift", "performance", "concept.adwin", "shadow", "ab",
            "multivariate.pca"} <= detectors


def test_changed_names_the_models_to_save_until_marked_saved():
    eng = _engine()
    assert eng.changed() == set()
    _feed(eng, _events(20))
    got = eng.changed()
    assert got == {"m"}
    got.clear()  # a copy: the engine's own record is not touched
    assert eng.changed() == {"m"}
    eng.state_for("m", delta=True)
    eng.mark_saved("m")
    assert eng.changed() == set()
    _feed(eng, _events(1))
    assert eng.changed() == {"m"}
    eng.drop_model("m")
    assert eng.changed() == set()


def test_segments_are_bounded_and_every_detector_reports_per_segment():
    eng = _engine()
    _feed(eng, _events(1500))
    rows = eng.flush()
    segs = {r.segment for r in rows}
    assert "" in segs and "region=__other__" in segs
    assert len(segs) == 1 + 3 + 1  # all traffic, 3 tracked regions, the rest
    for det in ("data_drift", "quality", "performance", "ab"):
        assert {r.segment for r in rows if r.detector == det} > {""}, det


def test_shadow_disagreeing_on_ten_percent_is_flagged_after_the_change_only():
    eng = DetectorEngine(DetectorsConfig.from_mapping(
        {"model": "m", "window": {"size": 1000}, "min_samples": 200, "concept": {"enabled": False},
         "segments": {"tags": ["region"]}}))
    rng = random.Random(3)
    for i in range(6000):
        cls = rng.choice(["cat", "dog", "bird"])
        shadow = cls if i < 3000 or rng.random() >= 0.10 else "fish"
        eng.observe_prediction(prediction(i, {"x": 1.0}, cls, request_id=f"r{i}", latency_ms=10.0,
                                          tags={"region": "eu" if i % 2 else "us"}))
        eng.observe_prediction(prediction(i, {"x": 1.0}, shadow, variant="shadow", version="v2",
                                          request_id=f"r{i}", latency_ms=14.0))
    rows = [r for r in eng.poll() if r.detector == "shadow"]
    assert {r.segment for r in rows} == {"", "region=eu", "region=us"}
    rows = [r for r in rows if r.segment == ""]
    agree = [r for r in rows if r.statistic == "agreement_rate"]
    assert [r.drift for r in agree] == [False] * 3 + [True] * 3
    assert all(0.86 < r.value < 0.94 for r in agree[3:]) and agree[0].value == 1.0
    assert {r.feature for r in rows} == {"v1->v2"}
    lat = [r for r in rows if r.statistic == "latency_delta_ms"]
    assert lat and all(r.value == 4.0 for r in lat)
    js = [r for r in rows if r.statistic == "jensen_shannon"]
    assert [r.drift for r in js] == [False] * 3 + [True] * 3


def test_ab_outcomes_per_variant_with_significance():
    eng = _engine()
    _feed(eng, _events(3000))
    rows = [r for r in eng.flush() if r.detector == "ab" and r.segment == ""]
    lift = [r for r in rows if r.statistic == "lift.B" and r.feature == "conversion"]
    assert lift and lift[-1].drift and lift[-1].p_value < 0.05 and 0.05 < lift[-1].value < 0.15
    # the last outcome arrives after the last window closed
    assert lift[-1].current_size == 1500 and lift[-1].reference_size in (1499, 1500)


def test_time_windows_close_by_event_time_and_by_clock():
    cfg = DetectorsConfig.from_mapping({"model": "m", "window": {"kind": "time", "duration_s": 60, "grace_s": 10},
                                        "min_samples": 10, "concept": {"enabled": False}})
    now = [0.0]
    eng = DetectorEngine(cfg, clock=lambda: now[0])
    eng.set_reference(from_events(features_stream(500, 10**9, base_features, base_features, start=10**6), "m", "v1"))
    evs = features_stream(150, 10**9, base_features, base_features)  # t = 0..149 s
    for ev in evs:
        eng.observe_prediction(ev)
    rows = eng.poll(now=0.0)
    starts = sorted({(r.window_start, r.window_end) for r in rows})
    assert len(starts) == 2 and (starts[0][1] - starts[0][0]).total_seconds() == 60
    from tests.detectors.detector_streams import T0
    end = T0.timestamp() + 180
    assert eng.poll(now=end + 5) == []  # grace not yet passed
    now[0] = end + 11
    assert eng.poll()  # the quiet third window closes on the clock


def test_prometheus_gauges_on_injected_registry():
    reg = CollectorRegistry()
    eng = _engine(registry=reg)
    _feed(eng, _events(1000))
    eng.poll()
    v = reg.get_sample_value("driftline_drift_statistic", {"model": "m", "version": "v1", "detector": "data_drift",
                                                          "feature": "x", "segment": "", "statistic": "psi"})
    assert v is not None and v > 0
    d = reg.get_sample_value("driftline_drift_detected", {"model": "m", "version": "v1", "detector": "data_drift",
                                                         "feature": "x", "segment": "", "statistic": "wasserstein"})
    assert d == 1.0
    # The verdict on every statistic of the feature; the statistic's own crossing apart.
    for stat in ("psi", "ks", "jensen_shannon"):
        labels = {"model": "m", "version": "v1", "detector": "data_drift", "feature": "x", "segment": "",
                  "statistic": stat}
        assert reg.get_sample_value("driftline_drift_detected", labels) == 1.0
        assert reg.get_sample_value("driftline_drift_exceeded", labels) in (0.0, 1.0)
    assert reg.get_sample_value("driftline_detector_events_total", {"model": "m", "type": "prediction"}) > 1000
    assert reg.get_sample_value("driftline_detector_windows_total", {"model": "m"}) == 2


def test_bad_events_are_counted_not_raised():
    reg = CollectorRegistry()
    eng = _engine(registry=reg)
    eng.observe_prediction({"model": "m", "timestamp": "not a time"})
    eng.observe_label({"model": "m"})
    eng.observe_prediction({"model": "other", "timestamp": "2026-01-01T00:00:00Z"})
    assert reg.get_sample_value("driftline_detector_ignored_total", {"reason": "engine_error"}) == 2
    assert reg.get_sample_value("driftline_detector_ignored_total", {"reason": "unconfigured_model"}) == 1


def test_reference_from_first_events_then_drift():
    eng = DetectorEngine(DetectorsConfig.from_mapping(
        {"model": "m", "window": {"size": 1000}, "min_samples": 200, "concept": {"enabled": False},
         "reference": {"source": "first_events", "first_events": 3000}}))

    def shifted(rng):
        f = base_features(rng)
        f["x"] += 1
        return f

    for ev in features_stream(7000, 5000, base_features, shifted, seed=4):
        eng.observe_prediction(ev)
    assert eng.reference("m", "v1").n_rows == 3000
    rows = [r for r in eng.poll() if r.detector == "data_drift" and r.statistic == "wasserstein" and r.feature == "x"]
    assert [r.drift for r in rows] == [False, False, True, True]


def test_quality_findings():
    eng = _engine()
    rng = random.Random(0)
    for i in range(500):
        f = base_features(rng)
        f["plan"] = "zzz" if i % 4 == 0 else f["plan"]
        f["y"] = None if i % 3 == 0 else f["y"] * 10
        f["n"] = "five" if i % 10 == 0 else f["n"]
        del f["flag"]
        f["brand_new"] = 1
        eng.observe_prediction(prediction(i, f, 1, t=i))
    rows = {(r.feature, r.statistic): r for r in eng.poll() if r.detector == "quality" and r.segment == ""}
    assert rows[("plan", "new_category_rate")].drift and "zzz" in rows[("plan", "new_category_rate")].details
    assert rows[("y", "missing_rate")].drift and rows[("y", "out_of_range_rate")].drift
    assert rows[("n", "type_violation_rate")].drift
    assert rows[("flag", "missing_rate")].value == 1.0 and json.loads(rows[("flag", "missing_rate")].details)["vanished"] is True
    assert rows[("brand_new", "unexpected_feature")].drift
    assert not rows[("x", "missing_rate")].drift and not rows[("x", "out_of_range_rate")].drift


# -- observe_many (the collector's batched path) equals one call per event, bit for bit -------------

def _stream(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Predictions with 20 numeric features, a categorical one, tags, odd values now and then,
    shadows for some requests and labels for half of the predictions, interleaved."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    ids: list[str] = []
    for i in range(n):
        eid = f"00000000-0000-7000-8000-{i:012d}"
        ids.append(eid)
        feats: dict[str, Any] = {f"f{k}": rng.gauss(1.0 if i > n // 2 and k < 3 else 0.0, 1.0) for k in range(20)}
        feats["plan"] = rng.choice(["free", "pro", "team"] + (["enterprise"] if i > n // 2 else []))
        odd = i % 97
        if odd == 1:
            feats["f3"] = None
        elif odd == 2:
            feats["f4"] = float("nan")
        elif odd == 3:
            feats["f5"] = "oops"
        elif odd == 4:
            feats["f6"] = True
        elif odd == 5:
            del feats["f7"]
        elif odd == 6:
            feats["surprise"] = 1
        elif odd == 7:
            feats["f8"] = 10**6  # far out of range: the overflow bin
        ts = f"2026-03-01T10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 10:01d}00000Z"
        p = rng.random()
        out.append({"type": "prediction", "event_id": eid, "timestamp": ts, "model": "m", "model_version": "v1",
                    "variant": "primary", "request_id": f"r{i}", "features": feats,
                    "prediction": {"1": p, "0": 1 - p}, "tags": {"region": rng.choice(["eu", "us"])}})
        if i % 5 == 0:
            q = min(1.0, p + (0.3 if i > n // 2 else 0.0))
            out.append({"type": "prediction", "event_id": f"00000000-0000-7000-9000-{i:012d}", "timestamp": ts,
                        "model": "m", "model_version": "v2", "variant": "shadow", "request_id": f"r{i}",
                        "features": feats, "prediction": {"1": q, "0": 1 - q}})
        if i >= 300 and i % 2 == 0:
            out.append({"type": "label", "event_id": f"00000000-0000-7000-a000-{i:012d}", "timestamp": ts,
                        "model": "m", "model_version": "v1", "prediction_id": ids[i - 300],
                        "label": str(int(rng.random() < 0.7))})
    return out


def _config() -> DetectorsConfig:
    return DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": 500}, "min_samples": 50,
        "reference": {"source": "first_events", "first_events": 800},
        "segments": {"tags": ["region"]}})


@pytest.mark.parametrize("chunk", [1, 7, 256, 5000])
def test_observe_many_equals_one_call_per_event(chunk: int) -> None:
    events = _stream(4000)
    one = DetectorEngine(_config())
    for ev in events:
        {"prediction": one.observe_prediction, "label": one.observe_label}[ev["type"]](ev)
    batched = DetectorEngine(_config())
    for i in range(0, len(events), chunk):
        batched.observe_many(events[i:i + chunk])
    rows_one, rows_batched = one.poll(float("-inf")), batched.poll(float("-inf"))
    assert len(rows_one) > 500  # windows closed, with drift, quality and concept rows
    assert {r.detector for r in rows_one} >= {"data_drift", "quality", "prediction_drift", "performance"}
    assert any(r.drift for r in rows_one if r.detector == "data_drift")
    assert rows_batched == rows_one  # every statistic equal to the last bit
    assert engine_state(batched) == engine_state(one)  # and so are the open windows' counts and sums


def test_ready_rows_saved_before_exceeded_existed_restore_with_exceeded_as_their_drift():
    import datetime as dt

    from driftline.detectors.base import MetricRow
    from driftline.detectors.engine import _row_json, _row_of

    t = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    row = MetricRow("m", "v1", "data_drift", "x", "", t, t, "jensen_shannon", 0.12, None, 0.1, False,
                    1000, 1000, "{}", True)
    assert _row_of(_row_json(row)) == row
    old = _row_json(row)[:-1]  # state written by a collector that had no exceeded column
    old[MetricRow.COLUMNS.index("drift")] = True
    assert _row_of(old).exceeded is True and _row_of(old).drift is True


def test_a_model_without_a_usable_reference_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17: a model with its own settings (reference.source: stored, the default) and no stored
    reference used to produce no drift rows and no log line. Now: one log line, a metric, a state,
    and a notice row per window (what the dashboard shows), until a reference is set."""
    import logging

    from driftline.detectors.base import STAT_REFERENCE_MISSING

    reg = CollectorRegistry()
    eng = DetectorEngine(DetectorsConfig.from_mapping({"model": "nr", "window": {"size": 100}, "min_samples": 50}),
                         registry=reg)
    rng = random.Random(3)

    def feed(start: int, n: int) -> None:
        for i in range(start, start + n):
            eng.observe_prediction(prediction(i, base_features(rng), {"1": 0.3, "0": 0.7}, model="nr"))

    with caplog.at_level(logging.WARNING, logger="driftline.detectors.monitor"):
        feed(0, 30)
        assert reg.get_sample_value("driftline_model_reference_missing", {"model": "nr"}) == 1.0  # at once
        feed(30, 220)
    said = [r.getMessage() for r in caplog.records if "no usable reference" in r.getMessage()]
    assert len(said) == 1 and "nr" in said[0] and "driftline reference set" in said[0]
    rows = eng.poll()
    notices = [(r.model_version, r.detector, r.feature, r.value, r.drift) for r in rows
               if r.statistic == STAT_REFERENCE_MISSING]
    assert notices == [("v1", "reference", "*", 100.0, False)] * 2
    assert not [r for r in rows if r.detector == "data_drift"]
    assert reg.get_sample_value("driftline_model_state", {"model": "nr", "state": "no_reference"}) == 1.0

    ref = [prediction(10**6 + i, base_features(rng), {"1": 0.3, "0": 0.7}, model="nr") for i in range(500)]
    eng.set_reference(from_events(ref, "nr", "v1"))
    assert reg.get_sample_value("driftline_model_reference_missing", {"model": "nr"}) is None
    feed(250, 150)
    rows = eng.poll()
    # The window open when the reference came had 50 predictions without one; the next has none.
    assert [r.value for r in rows if r.statistic == STAT_REFERENCE_MISSING] == [50.0]
    assert [r for r in rows if r.detector == "data_drift"]
    assert reg.get_sample_value("driftline_model_state", {"model": "nr", "state": "no_reference"}) is None


def test_models_with_a_traffic_reference_are_not_missing_one() -> None:
    from driftline.detectors.base import STAT_REFERENCE_MISSING

    reg = CollectorRegistry()
    cfg = DetectorsConfig.from_mapping({"model": "fe", "window": {"size": 100}, "min_samples": 50,
                                        "reference": {"source": "first_events", "first_events": 300}})
    eng = DetectorEngine(cfg, registry=reg)
    rng = random.Random(4)
    for i in range(250):
        eng.observe_prediction(prediction(i, base_features(rng), {"1": 0.3, "0": 0.7}, model="fe"))
    assert not [r for r in eng.poll() if r.statistic == STAT_REFERENCE_MISSING]
    assert reg.get_sample_value("driftline_model_reference_missing", {"model": "fe"}) is None


def _full_doc(eng, model="m"):
    doc = json.loads(inflate(eng.state_for(model)))
    return json.dumps(doc, sort_keys=True)


def test_a_full_snapshot_and_the_deltas_after_it_load_to_the_state_in_memory():
    from driftline.detectors.journal import merge_model_state

    evs = _events(1300)  # windows close, joins, shadows and arms all change
    eng = _engine()
    _feed(eng, evs[:300])
    full = eng.state_for("m")
    eng.mark_saved("m")
    deltas = []
    for i in range(300, len(evs), 411):  # chunks that straddle window closes
        _feed(eng, evs[i:i + 411])
        deltas.append(eng.state_for("m", delta=True))
        eng.mark_saved("m")
    assert all(b'"core_patch"' in inflate(d) for d in deltas)
    loaded = DetectorEngine(DetectorsConfig.from_mapping(CFG), clock=lambda: 0.0)
    loaded.load_model_state("m", full, deltas)
    assert _full_doc(loaded) == _full_doc(eng)
    merged = merge_model_state(json.loads(inflate(full)), [json.loads(inflate(d)) for d in deltas])
    assert json.dumps(merged["monitor"]["streams"], sort_keys=True) == json.dumps(
        json.loads(inflate(eng.state_for("m")))["monitor"]["streams"], sort_keys=True)
    more = _events(1600)[1300:]
    _feed(loaded, more)
    _feed(eng, more)
    assert loaded.flush() == eng.flush()


def _fleet_engine(models: int, segments: int) -> DetectorEngine:
    cfg = {"model": "*", "window": {"kind": "count", "size": 10_000}, "min_samples": 100,
           "segments": {"tags": ["shop"], "max_segments": 100}}
    eng = DetectorEngine(DetectorsConfig.from_mapping(cfg), clock=lambda: 0.0)
    rng = random.Random(9)
    names = [f"m{k}" for k in range(models)]
    for name in names:
        ref = [prediction(10**6 + i, base_features(rng), int(rng.random() < 0.5), model=name) for i in range(500)]
        eng.set_reference(from_events(ref, name, "*"))
        eng.ensure_model(eng.config.default_for(name))
        # every segment has state: the model's history
        eng.observe_many([prediction(i, base_features(rng), 1, model=name, tags={"shop": f"s{i % segments}"})
                          for i in range(3 * segments)])
        eng.state_for(name)
        eng.mark_saved(name)
    return eng


def _chunk_delta_bytes(eng: DetectorEngine, model: str, start: int) -> int:
    rng = random.Random(start)
    eng.observe_many([prediction(start + i, base_features(rng), 1, model=model, tags={"shop": "s0"})
                      for i in range(5)])
    assert eng.changed() == {model}  # untouched models are not saved at all
    size = len(eng.state_for(model, delta=True))
    eng.mark_saved(model)
    return size


def test_a_delta_holds_what_the_chunk_changed_not_the_models_or_segments_it_did_not_touch():
    small = _fleet_engine(1, 1)
    big = _fleet_engine(20, 50)  # 20 models x 50 segments of history
    full_big = len(big.state_for("m7"))
    big.mark_saved("m7")
    one = [_chunk_delta_bytes(small, "m0", 10_000 + 10 * k) for k in range(3)]
    many = [_chunk_delta_bytes(big, "m7", 10_000 + 10 * k) for k in range(3)]
    # the same 5 events in one segment: about the same bytes, whatever else the collector holds
    assert max(many) <= 1.5 * max(one), (one, many)
    assert max(many) * 10 < full_big, (many, full_big)  # a whole state record was every save


def test_metric_row_columns_are_the_tables_in_its_order(ch_client: Any) -> None:
    """A ``MetricRow`` is the tuple ``client.insert`` takes: its fields must be drift_metrics'
    columns, in the table's order (``computed_at``, filled by the table, aside)."""
    from driftline.detectors.base import MetricRow

    cols = [r[0] for r in ch_client.query("DESCRIBE TABLE driftline.drift_metrics").result_rows]
    assert list(MetricRow.COLUMNS) == [c for c in cols if c != "computed_at"]
    row = MetricRow(*range(len(MetricRow.COLUMNS)))
    assert row.as_tuple() == tuple(range(len(MetricRow.COLUMNS))) and row.details == MetricRow.COLUMNS.index("details")


@pytest.mark.parametrize("doc", [
    {"bins": [1, 2.5, 3], "nested": [{"p": 0.25}, [1.0, None, "x", True]], "s": "é"},
    {"stat": float("nan")}, {"bins": [1.0, float("inf")]}, {"neg": [-float("inf")]},
    {"big": 2**70}, {"bigs": [1, 2**70]}, {"huge": [10**400]}, {"np": __import__("numpy").float64(0.5)},
    {"npnan": __import__("numpy").float64("nan")}, {"t": (1, (2.0, "a"))}, {"k": {1: 2}}, [], {},
])
def test_state_json_loads_as_json_dumps_wrote_it(doc: Any) -> None:
    """orjson where it writes what json would, json (NaN kept as NaN) everywhere else."""
    from driftline.detectors.engine import _json_state

    got = json.loads(_json_state(doc))
    want = json.loads(json.dumps(doc, separators=(",", ":")))
    assert repr(got) == repr(want)  # repr: NaN equals nothing, its repr does
