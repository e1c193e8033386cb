"""The pipelined batch: chunks stored in order, observed only once stored, nothing acked on failure."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import pytest
from prometheus_client import CollectorRegistry

from driftline.collector.metrics import CollectorMetrics
from driftline.collector.pipeline import Pipeline, Position, RawRecord
from driftline.collector.writer import WriteResult
from driftline.sdk.codec import dumps
from driftline.sdk.ids import uuid7
from driftline.sdk.kafka_exporter import BATCH_HEADER


def _event(i: int) -> bytes:
    return dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": "m",
                  "timestamp": f"2026-03-01T10:00:00.{i:06d}Z", "features": {"x": i}, "prediction": 1})


class FakeWriter:
    """Records what was stored, on which thread, and can fail a given chunk a number of times."""

    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.stored: list[list[str]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def prepare(self, events: list[dict[str, Any]]) -> list[str]:
        return [e["event_id"] for e in events]

    def store(self, ids: list[str]) -> WriteResult:
        self.threads.add(threading.current_thread().name)
        n = len(self.stored)
        if self.fail.get(n, 0) > 0:
            self.fail[n] -= 1
            raise ConnectionError("store away")
        with self.lock:
            self.stored.append(ids)
        return WriteResult(stored={"predictions": len(ids)}, duplicates=0)


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
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=dead.extend,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5)
    records = _batch(23) + [RawRecord("t", "predictions", 99, 0, b"{not json")]
    result = pipe.process(records)
    assert result.stored == 23 and result.dead == 1 and len(dead) == 1
    assert [len(c) for c in writer.stored] == [5, 5, 5, 5, 3]
    assert observer.seen == writer.stored  # every chunk, in order, once
    assert observer.threads == {threading.current_thread().name}
    assert threading.current_thread().name not in writer.threads  # storage ran on the I/O thread


def test_a_failing_store_is_retried_and_nothing_is_lost_or_repeated() -> None:
    writer = FakeWriter(fail={1: 2})  # the second chunk fails twice, then succeeds
    observer = Observer(writer)
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5, retry_max_s=0.01)
    assert pipe.process(_batch(12)).stored == 12
    assert [len(c) for c in writer.stored] == [5, 5, 2]
    assert observer.seen == writer.stored


def test_stopping_while_storage_fails_raises_and_leaves_unstored_chunks_unobserved() -> None:
    writer = FakeWriter(fail={1: 10**9})
    observer = Observer(writer)
    stop = threading.Event()
    pipe = Pipeline(writer, CollectorMetrics(CollectorRegistry()), send_dead_letters=lambda d: None,  # type: ignore[arg-type]
                    observers=[observer], max_batch_events=5, retry_max_s=0.01, stop=stop)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ConnectionError):
        pipe.process(_batch(15))
    assert [len(c) for c in writer.stored] == [5]
    assert observer.seen == writer.stored  # the stored chunk only
