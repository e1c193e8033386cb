"""One batch through the collector: decode → dead-letter → scrub → store → detectors.

Synchronous and framework-free so it can be tested and benchmarked without Kafka; the faust app
(``collector/app.py``) feeds it batches from a worker thread and acknowledges the batch's offsets
only after :meth:`Pipeline.process` returns, which happens only once the rows are stored and the
dead letters are on their topic.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from driftline.collector.decode import DeadLetter, decode
from driftline.collector.metrics import CollectorMetrics
from driftline.collector.writer import ClickHouseWriter
from driftline.sdk.kafka_exporter import unpack

logger = logging.getLogger("driftline.collector")


@dataclass(frozen=True)
class RawRecord:
    topic: str
    role: str  # predictions | labels | outcomes
    partition: int
    offset: int
    value: bytes | None
    headers: Any = ()


class Scrubber(Protocol):
    def scrub_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Position:
    """Where an event came from: its Kafka record (a batch record holds many events)."""

    topic: str
    partition: int
    offset: int
    index: int = 0  # the event's place in its record: a record may be split across chunks


class Observer(Protocol):
    """A consumer of stored events (the detector engine).

    ``observe`` gets every event of a stored chunk with its Kafka position and the ids the
    writer found already stored (replays after a crash or rebalance, and repeated deliveries):
    the observer decides from its own saved state whether it has seen a replayed event. It runs
    on the storage thread before the batch is acknowledged, so state it saves there is durable
    before Kafka offsets are committed.
    """

    def observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Position],
                replayed: frozenset[str]) -> None: ...

    def tick(self, now_s: float) -> None: ...


@dataclass(frozen=True)
class BatchResult:
    stored: int
    dead: int
    duplicates: int


class Pipeline:
    def __init__(
        self,
        writer: ClickHouseWriter,
        metrics: CollectorMetrics,
        *,
        send_dead_letters: Callable[[list[DeadLetter]], None],
        scrubber: Scrubber | None = None,
        observers: Sequence[Observer] = (),
        retry_max_s: float = 5.0,
        stop: threading.Event | None = None,
        max_batch_events: int = 5_000,
    ) -> None:
        self.max_batch_events = max_batch_events
        self.writer = writer
        self.metrics = metrics
        self.send_dead_letters = send_dead_letters
        self.scrubber = scrubber
        self.observers = list(observers)
        self.retry_max_s = retry_max_s
        self.stop = stop or threading.Event()

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Store a batch. Blocks, retrying storage failures, until stored or ``stop`` is set
        (then raises, so the caller does not acknowledge the batch)."""
        events: list[dict[str, Any]] = []
        positions: list[Position] = []
        dead: list[DeadLetter] = []
        consumed: dict[str, int] = {}
        for r in records:
            values = unpack(r.value, r.headers) if r.value is not None else [None]
            consumed[r.topic] = consumed.get(r.topic, 0) + len(values)
            for index, value in enumerate(values):
                result = decode(value, topic=r.topic, role=r.role, partition=r.partition, offset=r.offset)
                if isinstance(result, DeadLetter):
                    dead.append(result)
                else:
                    events.append(result)
                    positions.append(Position(r.topic, r.partition, r.offset, index))
        for topic, n in consumed.items():
            self.metrics.consumed.labels(topic).inc(n)
        if dead:
            self._retry(lambda: self.send_dead_letters(dead), "dead-letter publish")
            for d in dead:
                self.metrics.deadlettered.labels(d.reason).inc()
                logger.warning("dead-lettered %s[%d]@%d: %s (%s)", d.topic, d.partition, d.offset, d.reason, d.detail)
        if self.scrubber is not None and events:
            events = self.scrubber.scrub_batch(events)  # one output per input, same order
        duplicates = 0
        stored = 0
        # One Kafka record may carry hundreds of events (SDK batch records): write in chunks of
        # at most ``max_batch_events`` so one insert stays bounded.
        for i in range(0, len(events), self.max_batch_events):
            chunk = events[i:i + self.max_batch_events]
            chunk_positions = positions[i:i + self.max_batch_events]
            start = time.perf_counter()
            result = self._retry(lambda: self.writer.write(chunk), "ClickHouse write")
            self.metrics.batch_write_seconds.observe(time.perf_counter() - start)
            self.metrics.batch_events.observe(len(chunk))
            for table, n in result.stored.items():
                self.metrics.stored.labels(table).inc(n)
                stored += n
            duplicates += result.duplicates
            if result.duplicates:
                self.metrics.duplicates.inc(result.duplicates)
            for observer in self.observers:
                try:
                    observer.observe(chunk, chunk_positions, result.skipped)
                except Exception:  # noqa: BLE001 - a detector bug must not stop storage
                    logger.exception("detector failed on a batch; the events are stored")
        return BatchResult(stored=stored, dead=len(dead), duplicates=duplicates)

    def tick(self, now_s: float) -> None:
        for observer in self.observers:
            try:
                observer.tick(now_s)
            except Exception:  # noqa: BLE001
                logger.exception("detector tick failed")

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        delay = 0.1
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - storage down: back off, never ack
                self.metrics.write_errors.inc()
                if self.stop.is_set():
                    raise
                # The type and ClickHouse's error code only: a message could quote a stored value.
                code = getattr(exc, "code", None) or _clickhouse_code(str(exc))
                logger.warning("%s failed (%s%s); retrying in %.1fs", what, type(exc).__name__,
                               f", ClickHouse code {code}" if code else "", delay)
                if self.stop.wait(delay):
                    raise
                delay = min(self.retry_max_s, delay * 2)


def _clickhouse_code(message: str) -> str:
    marker = "Code: "
    at = message.find(marker)
    if at < 0:
        return ""
    digits = "".join(ch for ch in message[at + len(marker):at + len(marker) + 6] if ch.isdigit())
    return digits
