"""``ModelStates``: per-model detector state saved in and loaded from the real embedded store."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from driftline.detectors import sink
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.state import ModelStates
from tests.detectors.detector_streams import base_features, label, prediction, uid

pytestmark = pytest.mark.integration

CFG = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 200}, "min_samples": 50,
                                    "reference": {"source": "first_events", "first_events": 300}})
SOURCE = ("predictions", 0)


def _events(model: str, n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        f = base_features(rng)
        if i > n // 2:
            f["x"] += 1.0
        out.append(prediction(i, f, int(rng.random() < 0.5), model=model))
        if i >= 30:
            out.append(label(i, uid(i - 30), int(rng.random() < 0.5), t=i, model=model))
    return out


def _run(states: ModelStates, model: str, events: list[dict[str, Any]], start: int, chunk: int) -> list[str]:
    """Feed ``events`` chunk by chunk as the collector does; the rows published, comparable."""
    rows: list[str] = []
    for i in range(0, len(events), chunk):
        part = events[i:i + chunk]
        for j, ev in enumerate(part):
            states.observed(model, SOURCE, (start + i + j, 0), ev)
        states.engine.observe_many(part)
        out = states.engine.poll(float("-inf"))
        rows += [repr(r.as_tuple()) for r in out]
        states.publish(out, check_owner=False)
    return rows


def _uninterrupted(model: str, evs: list[Any]) -> list[str]:
    """The rows one engine gives for ``evs`` with no restart: what a resumed run must reproduce."""
    baseline = DetectorEngine(CFG)
    baseline.ensure_model(CFG.default_for(model))
    baseline.observe_many(evs)
    return [repr(r.as_tuple()) for r in baseline.flush()]


def test_a_new_process_resumes_from_the_full_snapshot_and_its_deltas(ch_client: Any) -> None:
    model = f"st-{uuid.uuid4().hex[:8]}"
    evs = _events(model, 1500)
    expected = _uninterrupted(model, evs)

    cut = 1100
    first = ModelStates(DetectorEngine(CFG), ch_client)
    first.refresh({model}, set())
    assert first.loaded(model) and first.position(model, SOURCE) == (-1, -1)
    early = _run(first, model, evs[:cut], 0, 250)
    assert first.unsaved() == set()
    keys = {r[0] for r in ch_client.query("SELECT key FROM driftline.detector_state WHERE model = {m:String}",
                                          parameters={"m": model}).result_rows}
    assert "full" in keys and any(k.startswith("delta:") for k in keys)

    second = ModelStates(DetectorEngine(CFG), ch_client)
    second.refresh({model}, set())
    assert second.position(model, SOURCE) == (cut - 1, 0)
    late = _run(second, model, evs[cut:], cut, 250)
    assert early + late + [repr(r.as_tuple()) for r in second.engine.flush()] == expected


def test_small_chunks_are_saved_as_events_and_a_new_process_replays_them(ch_client: Any) -> None:
    """Chunks of a few events each (a fleet: many models share a chunk) are saved as the events
    themselves while no window closes; a restart folds the state deltas, then observes the
    events recorded after the last of them again, and goes on exactly as without a restart."""
    model = f"ev-{uuid.uuid4().hex[:8]}"
    evs = _events(model, 1500)
    expected = _uninterrupted(model, evs)

    cut = 1130
    first = ModelStates(DetectorEngine(CFG), ch_client)
    first.refresh({model}, set())
    early = _run(first, model, evs[:cut], 0, 37)
    kinds = [r[0] for r in ch_client.query(
        "SELECT JSONExtractString(meta, 'kind') FROM driftline.detector_state FINAL WHERE model = {m:String} "
        "ORDER BY JSONExtractUInt(meta, 'seq')", parameters={"m": model}).result_rows]
    assert {"full", "delta", "events"} <= set(kinds)
    assert kinds[-1] == "events" and "delta" in kinds[kinds.index("full"):]  # events after a state delta

    second = ModelStates(DetectorEngine(CFG), ch_client)
    second.refresh({model}, set())
    assert second.position(model, SOURCE) == (cut - 1, 0) and second.unsaved() == set()
    late = _run(second, model, evs[cut:], cut, 37)
    assert early + late + [repr(r.as_tuple()) for r in second.engine.flush()] == expected


def test_events_between_saves_are_kept_only_up_to_what_a_save_records_as_events(ch_client: Any) -> None:
    """A stage that saves at intervals observes many chunks between saves: past EVENTS_PER_STATE
    events a model's save is a state delta, so no more of its events are kept in memory, and a new
    process resumes exactly (no window closes here: the count alone decides the record's kind)."""
    from driftline.detectors.state import EVENTS_PER_STATE

    cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 5000},
                                        "min_samples": 50, "reference": {"source": "first_events",
                                                                         "first_events": 300}})
    model = f"cap-{uuid.uuid4().hex[:8]}"
    evs = [e for e in _events(model, 1500) if e["type"] == "prediction"]
    first = ModelStates(DetectorEngine(cfg), ch_client)
    first.refresh({model}, set())
    for start in (0, 700):
        part = evs[start:start + 700]
        for j, ev in enumerate(part):
            first.observed(model, SOURCE, (start + j, 0), ev)
        first.engine.observe_many(part)
        assert len(first._events[model]) == EVENTS_PER_STATE
        first.publish(first.engine.poll(float("-inf")), check_owner=False)
    kinds = [r[0] for r in ch_client.query(
        "SELECT JSONExtractString(meta, 'kind') FROM driftline.detector_state FINAL WHERE model = {m:String} "
        "ORDER BY JSONExtractUInt(meta, 'seq')", parameters={"m": model}).result_rows]
    assert "events" not in kinds and kinds[-1] == "delta", kinds

    second = ModelStates(DetectorEngine(cfg), ch_client)
    second.refresh({model}, set())
    assert second.position(model, SOURCE) == (1399, 0)
    second.engine.observe_many(evs[1400:])
    baseline = DetectorEngine(cfg)
    baseline.ensure_model(cfg.default_for(model))
    baseline.observe_many(evs)
    assert [repr(r.as_tuple()) for r in second.engine.flush()] == [repr(r.as_tuple()) for r in baseline.flush()]


@pytest.mark.parametrize("features", [20, 1000])
def test_the_estimate_of_the_events_kept_for_a_save_is_what_they_take(features: int) -> None:
    """held_bytes (what the stage weighs against its share of the memory budget) against tracemalloc
    of events decoded as the collector decodes them: within 0.8-1.25x."""
    import tracemalloc

    from driftline.sdk.codec import dumps
    from driftline.sdk.contract.fastcheck import fast_decode_all

    rng = random.Random(features)
    values = [dumps(prediction(i, {f"f{k}": rng.gauss(0, 1) for k in range(features)}, rng.random() > 0.5,
                               tags={"shop": "s1"}, latency_ms=1.0)) for i in range(400)]
    states = ModelStates(DetectorEngine(DetectorsConfig.from_mapping({"model": "*"})), client=None)
    states._positions["m"] = {}
    fast_decode_all(values[:5], "prediction")  # msgspec's types compiled before the count
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        events = fast_decode_all(values, "prediction")
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert events is not None and len(events) == 400
    for i, ev in enumerate(events):
        states.observed("m", SOURCE, (i, 0), ev)
    assert 0.8 <= states.held_bytes() / taken <= 1.25, (states.held_bytes(), taken)


def test_a_model_saved_meanwhile_by_another_process_is_dropped_not_overwritten(ch_client: Any) -> None:
    model = f"own-{uuid.uuid4().hex[:8]}"
    evs = _events(model, 400)
    mine, theirs = ModelStates(DetectorEngine(CFG), ch_client), ModelStates(DetectorEngine(CFG), ch_client)
    mine.refresh({model}, set())
    theirs.refresh({model}, set())
    _run(theirs, model, evs[:200], 0, 200)
    assert sink.latest_seqs(ch_client, [model]) == {model: 1}

    for j, ev in enumerate(evs[:10]):
        mine.observed(model, SOURCE, (j, 0), ev)
    mine.engine.observe_many(evs[:10])
    assert mine.unsaved() == {model}
    mine.publish([], check_owner=True)
    assert not mine.loaded(model) and mine.unsaved() == set() and model not in mine.engine.monitors
    assert sink.latest_seqs(ch_client, [model]) == {model: 1}

    # The partition came back to this process: the newer state is loaded, with its position.
    mine.refresh({model}, set())
    assert mine.loaded(model) and mine.position(model, SOURCE) == (199, 0)


def test_a_state_that_cannot_be_encoded_is_saved_whole_and_never_keeps_other_models_unsaved(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One model's state that fails to encode (a bug) used to fail the one insert of every model
    of the chunk, at every save. A failing delta is now replaced by a full snapshot; a failing
    snapshot leaves that model unsaved (tried again next time) while the others are saved; both
    are counted; and a new process resumes every model exactly."""
    from prometheus_client import CollectorRegistry

    bad, good = f"bad-{uuid.uuid4().hex[:8]}", f"good-{uuid.uuid4().hex[:8]}"
    evs = {m: _events(m, 1500) for m in (bad, good)}
    expected = {m: _uninterrupted(m, evs[m]) for m in (bad, good)}
    registry = CollectorRegistry()
    first = ModelStates(DetectorEngine(CFG), ch_client, registry=registry)
    first.refresh({bad, good}, set())
    real = first.engine.state_for
    broken = {"delta"}

    def state_for(model: str, *, delta: bool = False) -> bytes:
        if model == bad and ("delta" if delta else "full") in broken:
            raise TypeError("a state this build cannot encode")
        return real(model, delta=delta)

    monkeypatch.setattr(first.engine, "state_for", state_for)

    def errors(kind: str) -> float:
        return registry.get_sample_value("driftline_detector_state_encode_errors_total", {"kind": kind}) or 0.0

    def kinds(model: str) -> list[str]:
        return [r[0] for r in ch_client.query(
            "SELECT JSONExtractString(meta, 'kind') FROM driftline.detector_state FINAL WHERE model = {m:String} "
            "ORDER BY JSONExtractUInt(meta, 'seq')", parameters={"m": model}).result_rows]

    rows = {bad: [], good: []}
    for i in range(0, 1100, 250):  # both models in every save, as a fleet's chunk has them
        if i == 750:
            broken.add("full")
        if i == 1000:
            broken.clear()
        for m in (bad, good):
            part = evs[m][i:i + 250]
            for j, ev in enumerate(part):
                first.observed(m, SOURCE, (i + j, 0), ev)
            first.engine.observe_many(part)
            out = first.engine.poll(float("-inf"))
            rows[m] += [repr(r.as_tuple()) for r in out]
            first.publish(out, check_owner=False)  # never raises
        if i == 750:
            assert first.unsaved() == {bad}, "the model that cannot be encoded stays unsaved, alone"
            assert errors("full") == 2  # its two saves of this round
        else:
            assert first.unsaved() == set()
    # deltas for the good one; the bad one's snapshot, then (its fault gone) a delta again
    assert "delta" in kinds(good) and kinds(bad) == ["full", "delta"], (kinds(good), kinds(bad))
    assert errors("delta") == 2 + 2 and errors("full") == 2  # each attempt: 1 a round, 2 while it stays unsaved

    cut = 1250  # the events observed above (their state saved): a new process goes on from there
    second = ModelStates(DetectorEngine(CFG), ch_client)
    second.refresh({bad, good}, set())
    for m in (bad, good):
        assert second.position(m, SOURCE) == (cut - 1, 0)
        rows[m] += _run(second, m, evs[m][cut:], cut, 250)
    last = second.engine.flush()
    for m in (bad, good):
        assert rows[m] + [repr(r.as_tuple()) for r in last if r.model == m] == expected[m]


def test_a_reload_that_fails_leaves_the_model_to_be_read_again_not_reset(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose source moved is dropped and read again; if that read fails (the store away),
    the model must count as not loaded, so that the next chunk reads it, instead of going on
    from an empty state as if it had been read."""
    model = f"re-{uuid.uuid4().hex[:8]}"
    evs = _events(model, 400)
    states = ModelStates(DetectorEngine(CFG), ch_client, retry_s=0.0)
    states.refresh({model}, set())
    _run(states, model, evs[:300], 0, 300)
    assert states.unsaved() == set() and states.position(model, SOURCE) == (299, 0)
    theirs = ModelStates(DetectorEngine(CFG), ch_client)  # owned the source meanwhile, and went on
    theirs.refresh({model}, set())
    _run(theirs, model, evs[300:], 300, 100)
    monkeypatch.setattr(sink, "load_records", lambda client, models: (_ for _ in ()).throw(ConnectionError()))
    with pytest.raises(ConnectionError):
        states.refresh(set(), {model})  # the source jumped ahead: read the model again
    assert not states.loaded(model)
    monkeypatch.undo()
    states.refresh({model}, set())  # what the stage asks for a model not loaded
    assert states.loaded(model) and states.position(model, SOURCE) == (len(evs) - 1, 0)


def test_state_records_small_as_lz4_large_as_zstd_and_older_records_still_read() -> None:
    """detectors/journal.deflate: a record below 24 KiB as an LZ4 block, a larger one as a zstd
    frame at level 1; inflate reads both, and the zlib streams written before, byte for byte."""
    import random
    import zlib

    import cramjam

    from driftline.detectors.journal import deflate, inflate

    rng = random.Random(3)
    for n in (0, 10, 2_000, 24 * 1024 - 1, 24 * 1024, 200_000):
        data = bytes(rng.choice(b'{"abc":1.25,}') for _ in range(n))
        packed = deflate(data)
        assert inflate(packed) == data
        if n < 24 * 1024:
            assert packed[:4] == b"LZ4B" and len(packed) <= len(data) + 32
        else:
            assert bytes(cramjam.zstd.decompress(packed)) == data and len(packed) < len(data) // 2
        small = zlib.compressobj(1, zlib.DEFLATED, 13, 5)  # the small-record form written before
        for old in (zlib.compress(data, 1), zlib.compress(data, 9), small.compress(data) + small.flush()):
            assert inflate(old) == data


def test_state_blobs_are_stored_as_bytes_and_base64_records_from_before_still_load(ch_client: Any) -> None:
    """sink.save_records stores a blob's bytes as they are (no base64: a third fewer bytes to send
    and merge); records written before, base64 text with no ``blob`` key in meta, load as before."""
    import base64
    import datetime as dt

    model = f"raw-{uuid.uuid4().hex[:8]}"
    blob = bytes(range(256)) * 3 + b"\xff\xfe\x00"  # not UTF-8, with a NUL
    t = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)
    sink.save_records(ch_client, [sink.StateRecord(model, "full", blob, {"seq": 1, "kind": "full"}, t)])
    size, meta = ch_client.query("SELECT length(blob), meta FROM driftline.detector_state WHERE model = {m:String}",
                                 parameters={"m": model}).result_rows[0]
    assert size == len(blob) and '"blob":"bytes"' in meta

    old = b"an older record's compressed state"
    ch_client.insert("driftline.detector_state",
                     [[model, "delta:02", base64.b64encode(old).decode(), '{"seq":2,"kind":"delta"}',
                       t + dt.timedelta(seconds=1)]],
                     column_names=["model", "key", "blob", "meta", "saved_at"])
    got = {r.key: r for r in sink.load_records(ch_client, [model])[model]}
    assert got["full"].blob == blob and got["full"].meta == {"seq": 1, "kind": "full"}
    assert got["delta:02"].blob == old and got["delta:02"].meta == {"seq": 2, "kind": "delta"}
