"""The collector's Kafka consumer: batches of records from aiokafka, stored, then committed.

Until 3 Dec 2026 the collector consumed through faust-streaming agents. faust hands every Kafka
record to its stream one at a time (a task pair per record to wait on flow control, a channel
queue, an ``Event``, a processor and an ack each): ~75 µs of CPU per record on this machine against
~1.6 µs for aiokafka's ``getmany`` on the same records (``bench/bench_consume.py``). An SDK record
holds one model's events, so a fleet of quiet models sends records of one or two events, and that
per-record cost became most of the collector's CPU per event at 1,000 models (bench/fleet.md). The
collector uses none of faust's tables, windows or agents-as-services; it needs a consumer group,
batches and commits, which aiokafka (what faust itself runs on) gives directly.

The contract (tests/collector/test_crash.py, test_scale_out.py, test_consume.py):

* **Stored and observed before committed.** A batch's offsets are committed only after its rows
  are stored, its dead letters published and the detector stage observed it (its state saved:
  while batches keep coming the stage saves at most every ``detector_save_interval_s``, 5 s, and
  ``Pipeline.may_acknowledge`` is False until it has, so those offsets wait for the next commit).
  ``Pipeline.store`` of batch N+1 runs batch N's observers while N+1's rows are being stored, so the
  store and the detectors work at the same time, and N+2 is decoded (``Pipeline.prepare``, CPU only,
  nothing written or counted) on a thread of its own meanwhile, so the store is not idle while a
  batch is decoded; N is committed when that call returns, and a batch
  with none after it (idle, stop, rebalance) is observed on its own (``Pipeline.observe_stored``)
  and committed. A batch that was not stored is never committed, and nothing after it is
  processed: it is consumed again after a restart.
* **Held by the detectors, not committed.** While the detector stage holds stored chunks it could
  not observe (their models' saved state could not be read), no offset is committed: a crash
  then reads them again, and the detectors observe them after the restart. Commits resume, up to
  the latest stored batch, once the held chunks are observed, or once the stage lets them be
  acknowledged (a hold older than ``detector_held_ack_after_s``, 2 minutes, or some given up
  past its memory limit: from then on the rest are at risk). A rebalance meanwhile leaves
  unacknowledged ones to the partitions' next owner (``Pipeline.handover``).
* **Batches** hold at most ``batch_size`` records and about ``BATCH_MAX_BYTES`` of record values (one
  fetch more at most), or what arrived within ``batch_timeout_s``; while the previous batch is
  still being stored the next one keeps filling, so a slow store gets larger batches.
* **Co-partitioning.** Range assignment gives partition N of every event topic (same partition
  counts, created so by ``ensure_topics``) to one member: a model's predictions, labels and outcomes
  reach the same collector, which holds its detector state.
* **Rebalances.** Before partitions move, the batch being stored is finished, observed and
  committed (``on_partitions_revoked``); records fetched before the rebalance but not yet handed to the
  pipeline are dropped, and whichever member gets their partition reads them from the committed
  offset.
* **Stopping** (SIGTERM, SIGINT — installed even when the shell left SIGINT ignored): no new batch
  starts; the one being stored is finished, observed and committed unless storage was failing
  (then the pipeline gives up and it stays uncommitted, the one before it is still observed and
  committed); the consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Callable

from driftline.collector.config import CollectorSettings
from driftline.collector.memprobe import release_free_heap
from driftline.collector.pipeline import Pipeline, PreparedBatch, RawRecord
from driftline.sdk.contract import EVENT_KINDS

logger = logging.getLogger("driftline.collector")

# Bytes of record values per batch: 500 of the SDK's largest records (128 KiB each).
BATCH_MAX_BYTES = 64 * 1024 * 1024
# Per partition and fetch: aiokafka holds what it fetched, decompressed, until it is taken; with
# 8 MiB a collector that was behind held ~190 MiB of records, 1 MiB stores as fast.
FETCH_MAX_BYTES_PER_PARTITION = 1024 * 1024
# While the previous batch is still being stored, look for more records this often.
FILL_POLL_S = 0.05
# With nothing to store, how long one fetch waits: bounds how late a stop request is seen.
IDLE_WAIT_S = 0.5


def record_bytes(value: bytes | None) -> int:
    return 0 if value is None else len(value)


class BatchConsumer:
    """Consume the event topics as one consumer-group member and feed ``pipeline`` in batches.

    ``run`` returns when :meth:`request_stop` was called (or a signal arrived) and the batch in
    flight is settled, or when a batch could not be stored.
    """

    def __init__(self, settings: CollectorSettings, pipeline: Pipeline, executor: Executor, *,
                 tick: Callable[[float], Any] | None = None, tick_interval_s: float = 1.0,
                 on_batch: Callable[[Any, dict[Any, int]], None] | None = None) -> None:
        topics = settings.topics
        self.settings = settings
        self.pipeline = pipeline
        self.executor = executor
        self.tick = tick
        self.tick_interval_s = tick_interval_s
        self.max_records = settings.batch_size
        self.on_batch = on_batch  # (consumer, {tp: last offset}) after a batch is committed: lag metrics
        self.roles = {topics.for_role(kind.role): kind.role for kind in EVENT_KINDS}
        self._order = {topic: i for i, topic in enumerate(self.roles)}  # predictions before labels
        self._stopping = asyncio.Event()
        self._failed = False
        self._in_flight: tuple[asyncio.Future[Any], dict[Any, int]] | None = None
        self._unobserved: dict[Any, int] | None = None  # last offsets of a stored batch not yet observed
        # Last offsets of stored, observed batches to commit; they wait here while the detectors hold
        # some of their events (``Pipeline.may_acknowledge``) and go with the first commit after.
        self._deferred: dict[Any, int] = {}
        self._settle_lock = asyncio.Lock()
        self._generation = 0  # rebalances seen (on_partitions_revoked)
        self._stored_since_idle = False  # a batch was started since the collector last fell idle
        self.consumer: Any = None
        # The next batch's decoding, beside the storage thread (``executor``): see ``run``.
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftline-prepare")

    def request_stop(self) -> None:
        """Stop after the batch in flight (safe from a signal handler on the loop)."""
        if not self._stopping.is_set():
            logger.info("collector stopping: finishing the batch being stored")
        self.pipeline.stop.set()  # a batch stuck retrying gives up (uncommitted) instead of holding the stop
        self._stopping.set()

    def _make_consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        s = self.settings
        session_ms = int(s.session_timeout_s * 1000)
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap.split(","),
            group_id=s.group_id,
            client_id=f"{s.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=FETCH_MAX_BYTES_PER_PARTITION,
            partition_assignment_strategy=(RangePartitionAssignor,),
            # Tansu holds the first JoinGroup until the rebalance timeout expires: keep it short.
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=session_ms,
            heartbeat_interval_ms=min(1000, session_ms // 3),
        )

    async def run(self, *, install_signals: bool = False) -> bool:
        """Consume until stopped; True when every batch handed to the pipeline was stored."""
        from aiokafka.abc import ConsumerRebalanceListener

        owner = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                # Records fetched before a rebalance are dropped, all of them: a rebalance revokes
                # every partition (eager protocol) and positions restart from the committed offsets,
                # so whichever member gets a partition reads them again.
                owner._generation += 1
                await owner._settle(flush=True)
                if owner._deferred:  # held by the detectors, never acknowledged: the next owner reads them
                    owner._deferred = {}
                    await loop.run_in_executor(owner.executor, owner.pipeline.handover)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                logger.info("collector assigned %d partitions", len(assigned))

        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        self.consumer = self._make_consumer()
        self.consumer.subscribe(list(self.roles), listener=Listener())
        ticker = asyncio.create_task(self._ticks()) if self.tick is not None else None
        try:
            await self.consumer.start()
            while not self._stopping.is_set() and not self._failed:
                batch, generation = await self._collect()
                # Decoded and encoded (CPU only, nothing written) while the batch before is being
                # stored and observed: ClickHouse is not left idle while a batch is decoded.
                ready = self._prepare(batch) if batch and not self._stopping.is_set() else None
                # A next batch observes the stored one while it is being stored; without one
                # (idle, stopping) the stored batch is observed on its own and committed.
                await self._settle(flush=not batch or self._stopping.is_set())
                if not batch and self._stored_since_idle and not self._stopping.is_set():
                    self._stored_since_idle = False  # idle, every batch observed: the heap is at its lowest
                    await loop.run_in_executor(self.executor, _release_free_heap)
                if self._failed or self._stopping.is_set() or not batch or ready is None:
                    continue  # stopping: no new batch starts (its records were not committed)
                if generation != self._generation:
                    continue  # a rebalance while the previous batch settled: these are read again
                self._start(batch, ready)
            await self._settle(flush=True)
        finally:
            self._preparer.shutdown(wait=True, cancel_futures=True)  # a prepared batch never stored
            if ticker is not None:
                ticker.cancel()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await self.consumer.stop()  # leaves the group: the partitions move at once
        return not self._failed

    async def _collect(self) -> tuple[dict[Any, list[Any]], int]:
        """The next batch by partition (full, or ``batch_timeout_s`` passed and the previous batch
        settled) and the rebalance generation its records were fetched in."""
        batch: dict[Any, list[Any]] = {}
        records = 0
        size = 0
        generation = self._generation
        deadline = time.monotonic() + self.settings.batch_timeout_s
        while not self._stopping.is_set() and records < self.max_records and size < BATCH_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                storing = self._in_flight is not None and not self._in_flight[0].done()
                if not storing and (records or self._in_flight is not None or self._unobserved is not None
                                    or self._deferred):
                    break  # hand over what came, or (nothing new) let the stored batches be observed and committed
                # Still storing the previous batch: keep filling; idle: wait (getmany returns early).
                left = FILL_POLL_S if storing else IDLE_WAIT_S
            got = await self.consumer.getmany(timeout_ms=max(1, int(left * 1000)),
                                              max_records=self.max_records - records)
            if self._generation != generation:  # a rebalance: what was fetched before is read again
                batch.clear()
                records = size = 0
                generation = self._generation
            for tp, got_records in got.items():
                batch.setdefault(tp, []).extend(got_records)
                records += len(got_records)
                size += sum(record_bytes(r.value) for r in got_records)
        return batch, generation

    def _prepare(self, batch: dict[Any, list[Any]]) -> "Future[PreparedBatch]":
        """``Pipeline.prepare`` of the batch on the preparing thread (one batch at a time)."""
        order = self._order
        roles = self.roles
        records = [RawRecord(r.topic, roles[r.topic], r.partition, r.offset, r.value, r.headers or ())
                   for tp in sorted(batch, key=lambda tp: (order[tp.topic], tp.partition))  # predictions first
                   for r in batch[tp]]
        return self._preparer.submit(self.pipeline.prepare, records)

    def _start(self, batch: dict[Any, list[Any]], ready: "Future[PreparedBatch]") -> None:
        last = {tp: rs[-1].offset for tp, rs in batch.items()}  # a partition's records come in offset order
        store = self.pipeline.store
        # A failure to prepare (a bug) fails the store: the batch is not committed.
        future = asyncio.get_running_loop().run_in_executor(self.executor, lambda: store(ready.result()))
        self._in_flight = (future, last)
        self._stored_since_idle = True

    async def _settle(self, *, flush: bool) -> None:
        """Wait for the batch in flight; commit the batch before it, which that call observed. With
        ``flush``, also observe the batch in flight and commit it. A batch that failed is never
        committed: the one before it is observed and committed, then the consumer stops."""
        async with self._settle_lock:
            if self._in_flight is not None:
                future, last = self._in_flight
                try:
                    await asyncio.shield(future)
                except Exception:  # noqa: BLE001 - not stored: never commit it, stop
                    self._in_flight = None
                    self._failed = True
                    self._stopping.set()
                    logger.warning("batch not stored; stopping without acknowledging it")
                    await self._observe_and_commit()  # the batch before it was stored
                    return
                self._in_flight = None
                if self._unobserved is not None:
                    await self._commit(self._unobserved)  # observed while this batch was stored
                self._unobserved = last
            if flush:
                await self._observe_and_commit()

    async def _observe_and_commit(self) -> None:
        if self._unobserved is None and not self._deferred:
            return
        # Idle with offsets deferred: the detectors may have observed what they held (at a tick), or
        # deferred their save (written now, by the flush at the end of observe_stored).
        last, self._unobserved = self._unobserved or {}, None
        await asyncio.get_running_loop().run_in_executor(self.executor, self.pipeline.observe_stored)
        await self._commit(last)

    async def _commit(self, last: dict[Any, int]) -> None:
        from aiokafka.structs import OffsetAndMetadata

        for tp, offset in last.items():  # offsets only grow: the latest batch's cover the earlier ones'
            self._deferred[tp] = max(offset, self._deferred.get(tp, -1))
        if not self._deferred or not self.pipeline.may_acknowledge():
            return
        last, self._deferred = self._deferred, {}
        offsets = {tp: OffsetAndMetadata(offset + 1, "") for tp, offset in last.items()}
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - stored; a new owner may read them again (deduplicated)
            logger.warning("commit after a stored batch failed (%s); its records may be delivered again "
                           "and are then recognised as stored", type(exc).__name__)
            return
        if self.on_batch is not None:
            self.on_batch(self.consumer, last)

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            self.tick(time.time())  # type: ignore[misc]


def _release_free_heap() -> None:
    """What the decoded batches of a busy spell left free in malloc's heap goes back to the system."""
    start = time.perf_counter()
    freed = release_free_heap()
    if freed:
        logger.debug("collector idle: %.0f MiB of free heap returned to the system in %.0f ms",
                     freed / 2**20, 1000 * (time.perf_counter() - start))


def update_lag(metrics: Any) -> Callable[[Any, dict[Any, int]], None]:
    """A ``on_batch`` callback that sets ``driftline_collector_consumer_lag`` per partition."""

    def on_batch(consumer: Any, last: dict[Any, int]) -> None:
        for tp, offset in last.items():
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            if highwater is not None:
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset - 1))

    return on_batch

