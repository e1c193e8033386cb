"""One batch through the collector: unpack and decode (failures set aside as dead letters) →
scrub → store → observers (the detector stage) per stored chunk; the dead letters are published
last, once every chunk is stored.

Synchronous and framework-free so it can be tested and benchmarked without Kafka; the consumer
(``collector/consume.py``) feeds it batches from a worker thread with :meth:`Pipeline.store`, which
runs the previous batch's observers while the new batch is being stored, and acknowledges a batch's
offsets only once its rows are stored, its dead letters are on their topic and its observers ran
(the next ``store`` call returned, or :meth:`Pipeline.observe_stored`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
import time
from dataclasses import dataclass
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple, Protocol, Sequence

from driftline.collector.decode import DeadLetter, decode, decode_all
from driftline.collector.metrics import CollectorMetrics
from driftline.collector.store.client import error_code
from driftline.collector.store.writer import ClickHouseWriter, WriteResult
from driftline.sdk.contract import unpack

logger = logging.getLogger("driftline.collector")

IN_FLIGHT = 2  # chunks being stored at once: ClickHouse inserts one while the next is sent


@dataclass(frozen=True)
class RawRecord:
    topic: str
    role: str  # an EventKind.role of driftline.sdk.contract: predictions | labels | outcomes
    partition: int
    offset: int
    value: bytes | None
    headers: Any = ()


class Scrubber(Protocol):
    def scrub_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


class Position(NamedTuple):
    """Where an event came from: its Kafka record (a batch record holds many events).

    A named tuple, not a frozen dataclass: one is made per event, and a frozen dataclass's
    ``__init__`` costs about 1 µs.
    """

    topic: str
    partition: int
    offset: int
    index: int = 0  # the event's place in its record: a record may be split across chunks


def _always() -> bool:
    return True


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

    # Optional (looked up with getattr; an observer without them never holds a chunk):
    # ``may_acknowledge() -> bool``: False while it holds stored chunks it has not observed yet and
    # wants them read again after a crash, so the consumer commits nothing meanwhile;
    # ``handover() -> None``: the consumer's partitions were revoked before such chunks were
    # acknowledged; whoever owns the partitions next reads them again;
    # ``flush() -> None``: write what it deferred from the chunks observed so far (it saves at
    # intervals, and ``may_acknowledge`` is False meanwhile); called before the consumer commits
    # with no batch after (idle, stopping, rebalancing).


class ChunkReady(NamedTuple):
    """A chunk decoded, scrubbed and encoded for its insert (:meth:`Pipeline.prepare`)."""

    events: list[dict[str, Any]]
    positions: list[Position]
    repeated: frozenset[str]  # ids of events an earlier chunk of the batch holds (not written again)
    rows: Any  # the writer's PreparedChunk


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's CPU work done ahead (:meth:`Pipeline.prepare`), for :meth:`Pipeline.store`."""

    chunks: list[ChunkReady]
    dead: list[DeadLetter]
    consumed: dict[str, int]  # events per topic, counted when the batch is stored


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
        # Storage I/O runs here, overlapping the CPU work of the neighbouring chunks.
        self._io = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="driftline-insert")
        # Stored chunks whose observers have not run: (events, positions, ids already stored).
        self._unobserved: list[tuple[list[dict[str, Any]], list[Position], frozenset[str]]] = []

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Store a batch and run the observers over all of it: :meth:`store`, then
        :meth:`observe_stored`. Blocks, retrying storage failures, until stored or ``stop`` is set
        (then raises, so the caller does not acknowledge the batch)."""
        result = self.store(records)
        self.observe_stored()
        return result

    def prepare(self, records: Sequence[RawRecord]) -> PreparedBatch:
        """The CPU work of :meth:`store` done ahead (decode, scrub, encode), with no I/O and no
        observer: the consumer prepares the next batch while this one's insert runs, so the
        store is not idle while a batch is decoded. Nothing is written or counted until the
        batch is given to :meth:`store`; a batch never stored (a rebalance, a stop) leaves no
        trace. One batch is prepared at a time."""
        dead: list[DeadLetter] = []
        consumed: dict[str, int] = {}
        return PreparedBatch(list(self._ready(records, dead, consumed)), dead, consumed)

    def _ready(self, records: Sequence[RawRecord], dead: list[DeadLetter], consumed: dict[str, int]
               ) -> Iterator[ChunkReady]:
        taken: set[tuple[str, str]] = set()  # (type, id) of every event of the earlier chunks
        for chunk, chunk_positions in self._chunks(records, dead, consumed):
            if self.scrubber is not None:
                chunk = self.scrubber.scrub_batch(chunk)  # one output per input, same order
            keys = [(e["type"], e["event_id"]) for e in chunk]
            repeated = frozenset(k[1] for k in keys if k in taken)
            fresh = [e for e, k in zip(chunk, keys) if k not in taken] if repeated else chunk
            taken.update(keys)
            yield ChunkReady(chunk, chunk_positions, repeated, self.writer.prepare(fresh))

    def store(self, records: Sequence[RawRecord] | PreparedBatch) -> BatchResult:
        """Store a batch (its records, or the batch :meth:`prepare` made of them); the observers
        of its last chunks wait for the next call (or
        :meth:`observe_stored`). Blocks, retrying storage failures, until stored or ``stop`` is set
        (then raises, so the caller does not acknowledge the batch).

        One Kafka record may carry hundreds of events (SDK batch records), so the batch is cut
        into chunks of at most ``max_batch_events`` events, one insert each, and pipelined: up to
        :data:`IN_FLIGHT` chunks are being stored (I/O on the insert threads, ClickHouse working)
        while this thread decodes, scrubs and encodes the next one and runs the observers over
        the oldest stored one. Observers still see every chunk only after it is stored, in
        order, on this thread. An event repeated in a later chunk of the same batch is not
        written again (the replay lookup of that chunk may run before the first copy is stored)
        and is reported to the observers as a replay, as the lookup would have.

        The chunks still in flight when the batch ends are observed later: the next call runs
        their observers while its own first chunk is being stored, so ClickHouse and the
        detectors work at the same time across batches too (a batch is usually one chunk). The
        consumer acknowledges a batch only once its observers ran (:mod:`collector.consume`).
        """
        stored = duplicates = 0
        in_flight: deque[tuple[Future[Any], list[dict[str, Any]], list[Position], float, frozenset[str]]] = deque()
        if isinstance(records, PreparedBatch):
            dead, consumed, ready = records.dead, records.consumed, iter(records.chunks)
        else:  # decoded chunk by chunk, each while the one before is being stored
            dead, consumed = [], {}
            ready = self._ready(records, dead, consumed)
        previous, self._unobserved = self._unobserved, []  # the last batch's: observed once a chunk is sent

        def account(chunk: list[dict[str, Any]], chunk_positions: list[Position], result: WriteResult,
                    start: float, repeated: frozenset[str], *, later: bool = False) -> None:
            nonlocal stored, duplicates
            self.metrics.batch_write_seconds.observe(time.perf_counter() - start)
            self.metrics.batch_events.observe(len(chunk))
            for table, n in result.stored.items():
                self.metrics.stored.labels(table).inc(n)
                stored += n
            dups = result.duplicates + len(repeated)
            duplicates += dups
            if dups:
                self.metrics.duplicates.inc(dups)
            if result.reinserted:
                self.metrics.reinserted.inc(result.reinserted)
            skipped = result.skipped | repeated if repeated else result.skipped
            if later:
                self._unobserved.append((chunk, chunk_positions, skipped))
            else:
                self._observe(chunk, chunk_positions, skipped)

        def oldest() -> tuple[Any, ...]:
            future, chunk, chunk_positions, start, repeated = in_flight[0]
            result = future.result()  # raises if stopping while storage was failing
            in_flight.popleft()
            return chunk, chunk_positions, result, start, repeated

        try:
            for chunk, chunk_positions, repeated, prepared in ready:
                done = oldest() if len(in_flight) >= IN_FLIGHT else None
                future = self._io.submit(self._retry, lambda p=prepared: self.writer.store(p), "ClickHouse write")
                in_flight.append((future, chunk, chunk_positions, time.perf_counter(), repeated))
                while previous:  # while this chunk is being stored
                    self._observe(*previous.pop(0))
                if done is not None:
                    account(*done)
            while previous:  # a batch of dead letters only
                self._observe(*previous.pop(0))
            while in_flight:
                account(*oldest(), later=True)
        finally:
            for topic, n in consumed.items():
                self.metrics.consumed.labels(topic).inc(n)
            self._unobserved[:0] = previous  # not observed yet (a failure before the first chunk was sent)
            for future, *_ in in_flight:  # leaving on an error: let the writes in flight end first
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - the original error is the one to raise
                    pass
        if dead:
            self._retry(lambda: self.send_dead_letters(dead), "dead-letter publish")
            for d in dead:
                self.metrics.deadlettered.labels(d.reason).inc()
                logger.warning("dead-lettered %s[%d]@%d: %s (%s)", d.topic, d.partition, d.offset, d.reason, d.detail)
        return BatchResult(stored=stored, dead=len(dead), duplicates=duplicates)

    def observe_stored(self) -> None:
        """Run the observers over every stored chunk they have not seen yet, in order; then have
        them write what they deferred (the consumer commits next)."""
        pending, self._unobserved = self._unobserved, []
        for item in pending:
            self._observe(*item)
        self._each("flush")

    def may_acknowledge(self) -> bool:
        """False while an observer holds stored chunks it has not observed (their models' state
        could not be loaded), or could not write what it made of observed ones: their Kafka offsets
        must not be committed yet."""
        return all(getattr(o, "may_acknowledge", _always)() for o in self.observers)

    def handover(self) -> None:
        """The consumer's partitions were revoked with chunks held and not acknowledged: the
        observers let them go (the partitions' next owner reads them again)."""
        self._each("handover")

    def _each(self, optional: str) -> None:
        """Call the ``optional`` method (no arguments) of every observer that has it."""
        for observer in self.observers:
            method = getattr(observer, optional, None)
            if method is not None:
                try:
                    method()
                except Exception:  # noqa: BLE001 - a detector bug must not stop storage
                    logger.exception("detector %s failed", optional)

    def _observe(self, chunk: list[dict[str, Any]], positions: list[Position], skipped: frozenset[str]) -> None:
        for observer in self.observers:
            try:
                observer.observe(chunk, positions, skipped)
            except Exception:  # noqa: BLE001 - a detector bug must not stop storage
                logger.exception("detector failed on a batch; the events are stored")

    def _chunks(self, records: Sequence[RawRecord], dead: list[DeadLetter], consumed: dict[str, int]
                ) -> Iterator[tuple[list[dict[str, Any]], list[Position]]]:
        """Decoded events in chunks of at most ``max_batch_events``; refusals go to ``dead``;
        events per topic added to ``consumed`` (per topic, not per record: a fleet's records are
        small)."""
        size = self.max_batch_events
        events: list[dict[str, Any]] = []
        positions: list[Position] = []
        for r in records:
            topic, partition, offset = r.topic, r.partition, r.offset
            if r.value is None:
                decoded = [decode(None, topic=topic, role=r.role, partition=partition, offset=offset)]
            else:
                decoded = decode_all(unpack(r.value, r.headers), topic=topic, role=r.role, partition=partition,
                                     offset=offset)
            consumed[topic] = consumed.get(topic, 0) + len(decoded)
            for index, result in enumerate(decoded):
                if type(result) is DeadLetter:
                    dead.append(result)
                    continue
                events.append(result)
                positions.append(Position(topic, partition, offset, index))
                if len(events) >= size:
                    yield events, positions
                    events, positions = [], []
        if events:
            yield events, positions

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
                code = error_code(exc)
                logger.warning("%s failed (%s%s); retrying in %.1fs", what, type(exc).__name__,
                               f", ClickHouse code {code}" if code else "", delay)
                if self.stop.wait(delay):
                    raise
                delay = min(self.retry_max_s, delay * 2)
