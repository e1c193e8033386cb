"""The pipelined batch: chunks stored in order, observed only once stored, nothing acked on failure."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import pytest
from prometheus_client import CollectorRegistry

from driftline.collector.metrics import CollectorMetrics
from driftline.collector.pipeline import Pipeline, Position, RawRecord
from driftline.collector.store.writer import WriteResult
from driftline.sdk.codec import dumps
from driftline.sdk.ids import uuid7
from driftline.sdk.contract import BATCH_HEADER


def _event(i: int) -> bytes:
    return dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": "m",
                  "timestamp": f"2026-03-01T10:00:00.{i:06d}Z", "features": {"x": i}, "prediction": 1})


class FakeWriter:
    """Records what was stored, on which thread, and can fail the n-th chunk a number of times."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.stored: list[list[str]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.prepared = 0

    def prepare(self, events: list[dict[str, Any]]) -> tuple[int, list[str]]:
        self.prepared += 1
        return self.prepared - 1, [e["event_id"] for e in events]

    def store(self, chunk: tuple[int, list[str]]) -> WriteResult:
        index, ids = chunk
        self.threads.add(threading.current_thread().name)
        with self.lock:
            if self.fail.get(index, 0) > 0:
                self.fail[index] -= 1
                raise ConnectionError("store away")
            self.stored.append(ids)
        return WriteResult(stored={"predictions": len(ids)}, duplicates=0)


class ReplayAwareObserver:
    def __init__(self) -> None:
        self.skipped: list[frozenset[str]] = []

    def observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Position], replayed: frozenset[str]) -> None:
        self.skipped.append(replayed)

    def tick(self, now_s: float) -> None:
        pass


class Observer:
    def __init__(self, writer: FakeWriter) -> None:
        self.writer = writer
        self.seen: list[list[str]] = []
        self.threads: set[str] = set()

    def observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Position], replayed: frozenset[str]) -> None:
        ids = [e["event_id"] for e in events]
        with self.writer.lock:
            assert ids in self.writer.stored, "observed before it was stored"
        self.seen.append(ids)
        self.threads.add(threading.current_thread().name)

    def tick(self, now_s: float) -> None:
        pass


def _batch(n: int, per_record: int = 4) -> list[RawRecord]:
    values = [_event(i) for i in range(n)]
    return [RawRecord("t", "predictions", 0, off, b"\n".join(values[i:i + per_record]), [BATCH_HEADER])
            for off, i in enumerate(range(0, n, per_record))]


def test_chunks_are_stored_in_order_and_observed_after_storage_on_the_callers_thread() -> None:
    writer = FakeWriter()
    observer = Observer(writer)
    dead: list[Any] = []
    registry = CollectorRegistry()
    pipe = Pipeline(writer, CollectorMetrics(registry), send_dead_letters=dead.extend,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5)
    records = _batch(23) + [RawRecord("t", "predictions", 99, 0, b"{not json")]
    result = pipe.process(records)
    assert result.stored == 23 and result.dead == 1 and len(dead) == 1
    # consumed: every decoded value of the topic, the dead letter too (counted once per batch)
    assert registry.get_sample_value("driftline_collector_events_consumed_total", {"topic": "t"}) == 24
    assert sorted(len(c) for c in writer.stored) == [3, 5, 5, 5, 5]
    assert [len(c) for c in observer.seen] == [5, 5, 5, 5, 3]  # every chunk, in order, once
    assert sorted(observer.seen) == sorted(writer.stored)
    assert observer.threads == {threading.current_thread().name}
    assert threading.current_thread().name not in writer.threads  # storage ran on the I/O thread


def test_a_failing_store_is_retried_and_nothing_is_lost_or_repeated() -> None:
    writer = FakeWriter(fail={1: 2})  # the second chunk fails twice, then succeeds
    observer = Observer(writer)
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5, retry_max_s=0.01)
    assert pipe.process(_batch(12)).stored == 12
    assert sorted(len(c) for c in writer.stored) == [2, 5, 5]
    assert [len(c) for c in observer.seen] == [5, 5, 2]
    assert sorted(observer.seen) == sorted(writer.stored)


def _failing_second_chunk(max_batch_events: int) -> tuple[FakeWriter, Observer, threading.Event, Pipeline]:
    """A pipeline whose second chunk never stores, and the event that stops its retries."""
    writer = FakeWriter(fail={1: 10**9})
    observer = Observer(writer)
    stop = threading.Event()
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=max_batch_events, retry_max_s=0.01, stop=stop)
    return writer, observer, stop, pipe


def test_stopping_while_storage_fails_raises_and_leaves_unstored_chunks_unobserved() -> None:
    writer, observer, stop, pipe = _failing_second_chunk(5)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ConnectionError):
        pipe.process(_batch(15))
    assert all(ids in writer.stored for ids in observer.seen)  # stored chunks only
    assert [len(c) for c in observer.seen] == [5]  # the first; the second never got stored
    assert sorted(len(c) for c in writer.stored) in ([5], [5, 5])  # the third may have been in flight


def test_an_event_repeated_in_a_later_chunk_of_the_batch_is_stored_once_and_reported_as_a_replay() -> None:
    # Chunks are stored two at a time, so the second copy's replay lookup may run before the
    # first copy is stored: the pipeline itself must drop it.
    writer = FakeWriter()
    observer = ReplayAwareObserver()
    values = [_event(i) for i in range(8)]
    repeat = values[1]
    records = [RawRecord("t", "predictions", 0, 0, b"\n".join(values[:5]), [BATCH_HEADER]),
               RawRecord("t", "predictions", 0, 1, b"\n".join(values[5:] + [repeat]), [BATCH_HEADER])]
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5)
    result = pipe.process(records)
    stored_ids = [i for c in writer.stored for i in c]
    assert result.stored == 8 and result.duplicates == 1
    assert len(stored_ids) == len(set(stored_ids)) == 8
    from driftline.sdk.codec import loads

    assert observer.skipped == [frozenset(), frozenset({loads(repeat)["event_id"]})]


def test_a_batch_is_observed_while_the_next_one_is_being_stored() -> None:
    """``store`` leaves the last chunks' observers to the next call, which runs them while its own
    first chunk is being stored: the store and the detectors work at the same time."""
    observed_first = threading.Event()
    waited: list[bool] = []

    class Overlapping(FakeWriter):
        def store(self, chunk: tuple[int, list[str]]) -> WriteResult:
            if chunk[0] == 1:  # the second batch's chunk: stored while the first batch is observed
                waited.append(observed_first.wait(10))
            return super().store(chunk)

    class Flagging(Observer):
        def observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Position],
                    replayed: frozenset[str]) -> None:
            super().observe(events, positions, replayed)
            observed_first.set()

    writer = Overlapping()
    observer = Flagging(writer)
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=10)
    assert pipe.store(_batch(8)).stored == 8
    assert observer.seen == []  # stored, observed by the next call
    assert pipe.store(_batch(6)).stored == 6
    assert waited == [True]  # the first batch was observed while the second was being stored
    assert [len(c) for c in observer.seen] == [8]
    pipe.observe_stored()
    assert [len(c) for c in observer.seen] == [8, 6]
    pipe.observe_stored()  # nothing twice
    assert [len(c) for c in observer.seen] == [8, 6]


def test_a_failed_batch_leaves_the_batch_before_it_to_observe() -> None:
    _, observer, stop, pipe = _failing_second_chunk(10)
    pipe.store(_batch(8))
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ConnectionError):
        pipe.store(_batch(6))
    pipe.observe_stored()  # what the consumer does before it commits the batch before the failed one
    assert [len(c) for c in observer.seen] == [8]


def test_a_prepared_batch_stores_as_its_records_would_and_an_unstored_one_leaves_no_trace() -> None:
    """``prepare`` does the CPU work ahead (the consumer runs it while the batch before is stored):
    storing what it made gives what storing the records gives; a batch prepared and never stored
    (a rebalance, a stop) wrote, observed, published and counted nothing."""

    def pipeline() -> tuple[FakeWriter, Observer, list[Any], CollectorRegistry, Pipeline]:
        writer = FakeWriter()
        observer = Observer(writer)
        dead: list[Any] = []
        registry = CollectorRegistry()
        return writer, observer, dead, registry, Pipeline(
            writer, CollectorMetrics(registry), send_dead_letters=dead.extend,  # type: ignore[arg-type]
            observers=[observer], max_batch_events=5)

    records = _batch(23) + [RawRecord("t", "predictions", 99, 0, b"{not json")]
    dropped = _batch(4)
    results = []
    for ahead in (False, True):
        writer, observer, dead, registry, pipe = pipeline()
        if ahead:
            pipe.prepare(dropped)  # never stored
            result = pipe.store(pipe.prepare(records))
        else:
            result = pipe.store(records)
        pipe.observe_stored()
        consumed = registry.get_sample_value("driftline_collector_events_consumed_total", {"topic": "t"})
        results.append((result, [len(c) for c in observer.seen], len(dead), consumed))
        assert sorted(observer.seen) == sorted(writer.stored)
    assert results[0] == results[1]
    assert results[1][0].stored == 23 and results[1][1] == [5, 5, 5, 5, 3] and results[1][2:] == (1, 24)
