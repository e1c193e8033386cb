"""The detector stage at its faults, driven through the collector's ``Pipeline`` on the real store:
a crash between a chunk's insert and its state save, and the store away when a model's saved state
must be read (the chunks are held, then observed; past the limit or at a stop, given up and counted).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.detectors.stage_kit import _count, _drift_rows, _events_in, _records, _stage_cfg, stage_pipeline

pytestmark = pytest.mark.integration


def _straight_run(ch_client: Any, tag: str) -> None:
    """Model ``st-{tag}``'s records through a stage with no fault, saving after every chunk: the
    drift rows every disturbed run must reproduce."""
    straight, _ = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, save_interval_s=0.0)
    for i in range(0, len(recs := _records(tag, f"st-{tag}")), 40):
        straight.process(recs[i:i + 40])


@pytest.mark.parametrize("save_interval_s, dies_at", [(0.0, 3), (3600.0, 1)], ids=["every-chunk", "deferred"])
def test_crash_between_store_and_state_save_is_observed_exactly_once(ch_client: Any, save_interval_s: float,
                                                                     dies_at: int) -> None:
    """Saved after every chunk, the third chunk's save dies; saved at intervals, the batch's chunks
    are all observed and their one save (the flush before the commit) dies."""
    cfg = _stage_cfg()
    tag = uuid.uuid4().hex[:6]

    def records(model: str) -> list[Any]:
        return _records(tag, model)

    def pipeline() -> tuple[Any, Any]:
        return stage_pipeline(cfg, ch_client, max_batch_events=100, save_interval_s=save_interval_s)

    _straight_run(ch_client, tag)

    class Crash(BaseException):
        pass

    recs = records(f"cr-{tag}")
    first, stage = pipeline()
    for i in range(0, 200, 40):
        first.process(recs[i:i + 40])
    # The next batch: its chunks are stored, a state save (the third, or the deferred one) never happens.
    saves = {"n": 0}
    real_save = stage.states.save

    def dying_save(models: list[str]) -> None:
        saves["n"] += 1
        if saves["n"] == dies_at:
            raise Crash()
        real_save(models)

    stage.states.save = dying_save  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.process(recs[200:240])
    # A new process: Kafka redelivers from an older commit (offsets lag the stored rows).
    second, stage2 = pipeline()
    for i in range(120, len(recs), 40):
        second.process(recs[i:i + 40])
    got, want = _drift_rows(ch_client, f"cr-{tag}"), _drift_rows(ch_client, f"st-{tag}")
    assert want and {r[1] for r in want} >= {"data_drift", "performance", "quality"}
    assert got == want
    assert stage2.metrics.enabled


def test_a_busy_stage_saves_at_intervals_and_acknowledges_nothing_it_has_not_saved(ch_client: Any) -> None:
    """While batches keep coming, drift rows and state are written at most every save_interval_s;
    until then the consumer may not commit; the flush before an idle or final commit writes the
    rest. The rows are those of a stage that saves after every chunk."""
    tag = uuid.uuid4().hex[:6]
    _straight_run(ch_client, tag)
    pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, save_interval_s=5.0)
    now = [0.0]
    stage.clock = lambda: now[0]
    saves: list[float] = []
    real_save = stage.states.save

    def save(models: list[str]) -> None:
        saves.append(now[0])
        real_save(models)

    stage.states.save = save  # type: ignore[method-assign]
    recs = _records(tag, f"iv-{tag}")
    batches = [recs[i:i + 40] for i in range(0, len(recs), 40)]
    acknowledged = []
    for b in batches:  # one batch a second, each observed by the next store call (as the consumer runs it)
        pipeline.store(b)
        acknowledged.append(pipeline.may_acknowledge())
        now[0] += 1.0
    assert saves and all(b - a >= 5.0 for a, b in zip(saves, saves[1:])), saves
    assert len(saves) >= (len(batches) - 2) // 5, "a save every 5 s while batches keep coming"
    assert not all(acknowledged) and any(acknowledged)
    assert _drift_rows(ch_client, f"iv-{tag}") != _drift_rows(ch_client, f"st-{tag}"), "rows wait for the save"
    pipeline.observe_stored()  # the consumer, idle or stopping, before it commits
    assert pipeline.may_acknowledge()
    got, want = _drift_rows(ch_client, f"iv-{tag}"), _drift_rows(ch_client, f"st-{tag}")
    assert want and {r[1] for r in want} >= {"data_drift", "performance", "quality"}
    assert got == want
    pipeline.observe_stored()
    assert len(saves) == len(set(saves)), "nothing new: the flush saves nothing"


class _StoreAway:
    """``sink.load_records`` failing while ``on``, as with the store away (the stage's own retries
    are cut to none by the tests: 30 s in production)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from driftline.detectors import sink

        self.on, self.calls, real = True, 0, sink.load_records

        def load_records(client: Any, models: Any) -> Any:
            self.calls += 1
            if self.on:
                raise ConnectionError("the store is away")
            return real(client, models)

        monkeypatch.setattr(sink, "load_records", load_records)


@pytest.mark.parametrize("cap", ["small", "default"])
def test_a_busy_stage_saves_early_when_the_events_kept_for_its_save_pass_their_share(ch_client: Any,
                                                                                    cap: str) -> None:
    """The events a deferred save keeps (an events record may hold them) are bounded by a share of the
    memory budget: past it the stage saves although its interval has not passed (the clock never
    moves here). With the default share (1/8 of 512 MiB) this run keeps every event until the flush."""
    from driftline.sdk.codec import loads
    from driftline.detectors.state import HELD_EVENT_BYTES, HELD_FEATURE_BYTES

    tag = uuid.uuid4().hex[:6]
    _straight_run(ch_client, tag)
    pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, save_interval_s=3600.0,
                                     memory_budget_mb=512.0)
    assert stage.held_save_max_bytes == 64 * 2**20  # 1/8 of the budget
    stage.clock = lambda: 1.0
    recs = _records(tag, f"hb-{tag}")
    widest = max(len(loads(line).get("features") or ()) for r in recs for line in r.value.split(b"\n"))
    per_event = HELD_EVENT_BYTES + HELD_FEATURE_BYTES * widest
    if cap == "small":
        stage.held_save_max_bytes = 150 * HELD_EVENT_BYTES
    held_at_save: list[int] = []
    real_save = stage.states.save

    def save(models: list[str]) -> None:
        held_at_save.append(stage.states.held_bytes())
        real_save(models)

    stage.states.save = save  # type: ignore[method-assign]
    for i in range(0, len(recs), 40):
        pipeline.store(recs[i:i + 40])
    if cap == "small":
        assert len(held_at_save) >= 10, held_at_save  # ~4,000 events, ~150 at a time
        # the first publish saves at once (no save before it); then never more than the cap and one chunk
        assert all(0 < h <= stage.held_save_max_bytes + 100 * per_event for h in held_at_save[1:]), held_at_save
    else:
        assert len(held_at_save) == 1, held_at_save  # the first chunk's; the rest wait for the flush
    pipeline.observe_stored()
    assert stage.states.held_bytes() == 0 and pipeline.may_acknowledge()
    got, want = _drift_rows(ch_client, f"hb-{tag}"), _drift_rows(ch_client, f"st-{tag}")
    assert want and got == want


def _outage_after_a_straight_run(ch_client: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """A run without faults of model ``st-{tag}`` stored, then the store away and a stage (metrics
    in ``reg``, no state retries) to run ``ho-{tag}`` through: (tag, away, reg, pipeline, stage)."""
    from prometheus_client import CollectorRegistry

    tag = uuid.uuid4().hex[:6]
    _straight_run(ch_client, tag)
    away = _StoreAway(monkeypatch)
    reg = CollectorRegistry()
    pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, registry=reg)
    stage.states.retry_s = 0.0
    return tag, away, reg, pipeline, stage


def test_chunks_whose_state_cannot_be_loaded_are_held_then_observed_exactly_once(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The store away when a model's first chunk comes: its saved state cannot be read. That chunk
    and the ones after it used to be skipped by the detectors ("detector failed on a batch") while
    stored; now they are held, tried again with a back-off, and observed in order once the state
    loads: the drift and performance rows equal those of a run without the outage."""
    tag, away, reg, pipeline, stage = _outage_after_a_straight_run(ch_client, monkeypatch)
    now = [0.0]
    stage.clock = lambda: now[0]
    recs = _records(tag, f"ho-{tag}")
    for i in range(0, 400, 40):  # 10 batches, 0.5 s apart: attempts at 0, 1, 3 s (back-off 1, 2, 4 s)
        pipeline.process(recs[i:i + 40])
        pipeline.tick(1e9)  # ticks do not close windows (or try sooner) while events are held
        now[0] += 0.5
    assert away.calls == 3
    assert reg.get_sample_value("driftline_detector_events_held") == _events_in(recs[:400])
    assert _count(ch_client, "predictions", f"ho-{tag}") + _count(ch_client, "labels", f"ho-{tag}") \
        == _events_in(recs[:400]), "held events are stored (and acknowledged) meanwhile"
    assert _drift_rows(ch_client, f"ho-{tag}") == []
    assert not pipeline.may_acknowledge(), "held chunks must not be committed: a crash would lose them"

    away.on = False
    now[0] = 7.0  # the next attempt is due: a tick observes what is held, with no new chunk
    pipeline.tick(time.time())
    assert reg.get_sample_value("driftline_detector_events_held") == 0 and away.calls == 4
    pipeline.observe_stored()  # what the idle consumer runs before it commits: the deferred save is made
    assert pipeline.may_acknowledge()
    for i in range(400, len(recs), 40):
        pipeline.process(recs[i:i + 40])
    got, want = _drift_rows(ch_client, f"ho-{tag}"), _drift_rows(ch_client, f"st-{tag}")
    assert want and {r[1] for r in want} >= {"data_drift", "performance", "quality"}
    assert got == want
    assert reg.get_sample_value("driftline_detector_events_held") == 0
    assert not reg.get_sample_value("driftline_detector_events_unobserved_total")
    assert "detector failed on a batch" not in caplog.text
    assert "stored events held for the detectors" in caplog.text


def test_held_events_past_the_limit_are_given_up_and_counted_and_the_rest_acknowledged(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    tag = uuid.uuid4().hex[:6]
    away = _StoreAway(monkeypatch)
    reg = CollectorRegistry()
    pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, registry=reg)
    stage.states.retry_s = 0.0
    stage.held_max_values = 5_000  # ~200 events of 21 features and their labels
    recs = _records(tag, f"lim-{tag}")[:200]
    for i in range(0, len(recs), 40):
        pipeline.process(recs[i:i + 40])
    held = reg.get_sample_value("driftline_detector_events_held")
    given_up = reg.get_sample_value("driftline_detector_events_unobserved_total")
    assert held > 0 and given_up > 0 and held + given_up == _events_in(recs)
    assert stage.held_values <= stage.held_max_values
    assert pipeline.may_acknowledge(), "past the limit the rest is acknowledged: the broker must not wait"
    assert away.on
    stage.close()  # the store still away: the rest is given up, and said
    assert reg.get_sample_value("driftline_detector_events_unobserved_total") == _events_in(recs)
    assert reg.get_sample_value("driftline_detector_events_held") == 0
    assert _drift_rows(ch_client, f"lim-{tag}") == []


def test_held_events_at_a_stop_or_a_rebalance_stay_unacknowledged_and_are_observed_when_read_again(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Within the limit, held chunks are never acknowledged: a stop does not count them given up
    (the next start reads them again), and after a rebalance (``handover``) the same records read
    again -- replays now, all stored -- are observed: the rows equal a run without the outage."""
    from prometheus_client import CollectorRegistry

    tag, away, reg, pipeline, stage = _outage_after_a_straight_run(ch_client, monkeypatch)
    recs = _records(tag, f"ho-{tag}")
    for i in range(0, 400, 40):
        pipeline.process(recs[i:i + 40])
    assert reg.get_sample_value("driftline_detector_events_held") == _events_in(recs[:400])
    assert not pipeline.may_acknowledge()

    pipeline.handover()  # the partitions revoked: the held chunks go, to be read again
    assert reg.get_sample_value("driftline_detector_events_held") == 0 and pipeline.may_acknowledge()
    assert not reg.get_sample_value("driftline_detector_events_unobserved_total")
    assert "left to the partitions' next owner" in caplog.text

    away.on = False
    for i in range(0, len(recs), 40):  # read again from the last commit: the first 400 are replays
        pipeline.process(recs[i:i + 40])
    assert _drift_rows(ch_client, f"ho-{tag}") == _drift_rows(ch_client, f"st-{tag}") != []

    away.on = True
    reg2 = CollectorRegistry()
    pipeline2, stage2 = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, registry=reg2)
    stage2.states.retry_s = 0.0
    more = _records(tag, f"stop-{tag}")[:120]
    for i in range(0, len(more), 40):
        pipeline2.process(more[i:i + 40])
    assert reg2.get_sample_value("driftline_detector_events_held") == _events_in(more)
    assert not pipeline2.may_acknowledge()
    stage2.close()  # a stop with chunks held within the limit: not given up, read again at the next start
    assert reg2.get_sample_value("driftline_detector_events_held") == 0
    assert not reg2.get_sample_value("driftline_detector_events_unobserved_total")
    assert "read again at the next start" in caplog.text


def test_a_held_chunk_is_tried_again_with_one_read_not_the_states_retries(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first load of a chunk's state retries (the store briefly away); once the chunk is held,
    each later attempt is one read: the back-off is the retry, and the storage thread, which runs
    the attempts, goes on storing instead of sitting in 30 s of retries every time."""
    tag = uuid.uuid4().hex[:6]
    away = _StoreAway(monkeypatch)
    pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100)
    stage.states.retry_s = 2.0
    stage.states.sleep = lambda s: None  # the retries' waits: not slept, the 2 s deadline ends them
    now = [0.0]
    stage.clock = lambda: now[0]
    recs = _records(tag, f"one-{tag}")
    pipeline.process(recs[:40])
    first = away.calls
    assert first > 1, "the first load retried"
    for i in range(40, 400, 40):  # attempts due at 1, 3, 7 s: one read each
        now[0] += 1.0
        pipeline.process(recs[i:i + 40])
    assert away.calls == first + 3
    away.on = False
    now[0] += 10.0
    pipeline.process(recs[400:440])
    assert stage.held_events == 0 and pipeline.may_acknowledge()


def test_a_hold_older_than_its_bound_is_acknowledged_then_observed_or_given_up_at_a_stop(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Commits wait for a hold at most ``held_ack_after_s``: `driftline up`'s stop waits for every
    record to be committed, and the broker's retention too. Past it the held events are still
    observed once the state loads; still held at a stop, they are given up and counted."""
    from prometheus_client import CollectorRegistry

    tag = uuid.uuid4().hex[:6]
    away = _StoreAway(monkeypatch)
    now = [0.0]
    runs = []
    for name in ("late", "stop"):
        reg = CollectorRegistry()
        pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, registry=reg)
        stage.states.retry_s = 0.0
        stage.clock = lambda: now[0]
        stage.held_ack_after_s = 120.0
        recs = _records(tag, f"{name}-{tag}")
        for i in range(0, 200, 40):
            pipeline.process(recs[i:i + 40])
        assert not pipeline.may_acknowledge()
        runs.append((reg, pipeline, stage, recs))
    now[0] += 119.0
    assert not any(p.may_acknowledge() for _, p, _, _ in runs)
    now[0] += 2.0
    assert all(p.may_acknowledge() for _, p, _, _ in runs)
    assert "their Kafka offsets are committed now" in caplog.text

    (reg, pipeline, stage, recs), (reg2, _, stage2, recs2) = runs
    stage2.close()  # still held at a stop, acknowledged: given up and counted
    assert reg2.get_sample_value("driftline_detector_events_unobserved_total") == _events_in(recs2[:200])
    away.on = False
    now[0] += 60.0
    pipeline.process(recs[200:240])  # the state loads: what was held is observed, nothing given up
    assert reg.get_sample_value("driftline_detector_events_held") == 0
    assert not reg.get_sample_value("driftline_detector_events_unobserved_total")
    observed = sum(s.value for m in reg.collect() for s in m.samples
                   if s.name == "driftline_detector_events_total" and s.labels.get("model") == f"late-{tag}")
    assert observed == _events_in(recs[:240])


class _WritesAway:
    """The store refusing the detectors' writes (drift rows and state records) while ``on``; reads
    and the collector's inserts work."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from driftline.detectors import sink

        self.on = False

        def refusing(real: Any) -> Any:
            def write(*args: Any, **kwargs: Any) -> Any:
                if self.on:
                    raise ConnectionError("the store refuses writes")
                return real(*args, **kwargs)
            return write

        for name in ("write_rows", "save_records"):
            monkeypatch.setattr(sink, name, refusing(getattr(sink, name)))


def test_output_the_store_refuses_is_kept_and_unacknowledged_then_written_or_observed_again(
        ch_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The store takes the events but refuses the detectors' drift rows and state for a while.
    The chunks are observed, their rows and state kept in memory, and no offset is acknowledged
    meanwhile: once the store takes writes again the kept rows are written, and the rows equal a
    run without the fault. A process that crashed during the fault reads those records again (they
    were not committed) and observes them past the saved state: the same rows again."""
    import logging

    from prometheus_client import CollectorRegistry

    caplog.set_level(logging.INFO, logger="driftline.detectors.stage")
    tag = uuid.uuid4().hex[:6]
    _straight_run(ch_client, tag)
    want = _drift_rows(ch_client, f"st-{tag}")
    assert want and {r[1] for r in want} >= {"data_drift", "performance", "quality"}

    away = _WritesAway(monkeypatch)
    for model in (f"wa-{tag}", f"wc-{tag}"):
        recs = _records(tag, model)
        registry = CollectorRegistry()
        pipeline, stage = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100, registry=registry)
        stage.states.retry_s = 0.0
        unwritten = lambda: registry.get_sample_value("driftline_detector_output_unwritten_seconds")  # noqa: E731
        for i in range(0, 120, 40):
            pipeline.process(recs[i:i + 40])
        assert pipeline.may_acknowledge()
        away.on = True
        for i in range(120, 320, 40):
            pipeline.process(recs[i:i + 40])
            pipeline.tick(time.time())
            assert not pipeline.may_acknowledge(), "observed, but rows and state unwritten: a crash must read them"
        assert stage.states._unwritten_rows, "windows closed during the fault: their rows are kept"
        assert unwritten() > 0  # what `driftline up`'s stop reads to say why records wait
        away.on = False
        if model.startswith("wa"):  # the store is back: what was kept is written with the next chunk
            for i in range(320, len(recs), 40):
                pipeline.process(recs[i:i + 40])
            assert pipeline.may_acknowledge() and not stage.states._unwritten_rows and unwritten() == 0
        else:  # the process crashed during the fault: the next one reads from the last commit (120)
            pipeline2, _ = stage_pipeline(_stage_cfg(), ch_client, max_batch_events=100)
            for i in range(120, len(recs), 40):
                pipeline2.process(recs[i:i + 40])
        assert _drift_rows(ch_client, model) == want, model
    assert "the detectors' output could not be written (ConnectionError" in caplog.text
    assert "the detectors' output was written again" in caplog.text
    assert "detector failed on a batch" not in caplog.text and "detector tick failed" not in caplog.text
