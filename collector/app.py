"""The collector: a faust-streaming app over the prediction, label and outcome topics.

Offsets: each agent takes batches with ``take.take_bounded`` (faust's ``Stream.take_events`` with a
bound in bytes), which disables faust's per-event acks and acknowledges the batch's events only
when the agent asks for the next batch, i.e. after ``Pipeline.process`` returned (rows stored,
dead letters published). The agent never raises out of its loop (faust issue 315: an agent that
raised skips offsets); storage failures are retried
inside ``process`` until they succeed or the worker stops, and a batch that was not stored is not
acknowledged, so it is consumed again after a restart. A crash test (SIGKILL mid-stream) proves
it (tests/collector/test_crash.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from driftline.collector.config import CollectorSettings
from driftline.collector.decode import DeadLetter
from driftline.collector.pipeline import Observer, Pipeline, RawRecord
from driftline.collector.take import take_bounded
from driftline.sdk.contract import EVENT_KINDS

logger = logging.getLogger("driftline.collector")

DEAD_LETTER_MAX_BYTES = 256 * 1024
DEAD_LETTER_TIMEOUT_S = 10.0


def dead_letter_sender(bootstrap: str, topic: str) -> Any:
    """A function that publishes dead letters (value truncated, reason in headers) and waits for acks.

    It goes through the SDK's Kafka transport (``KafkaExporter.send``: the same producer
    lifecycle, deadlines and fresh producer after a failure as every event the SDK exports); dead
    letters are sent as they are, without the SDK's batch framing, and without a key.
    """
    from driftline.sdk.export.kafka import KafkaExporter

    transport = KafkaExporter(bootstrap, client_id="driftline-dlq", compression_type=None,
                              max_request_size=2 * DEAD_LETTER_MAX_BYTES)

    def send(letters: list[DeadLetter]) -> None:
        messages = []
        for d in letters:
            value = d.value[:DEAD_LETTER_MAX_BYTES]
            headers = [
                ("driftline-reason", d.reason.encode()),
                ("driftline-detail", d.detail.encode()[:1000]),
                ("driftline-source", f"{d.topic}/{d.partition}/{d.offset}".encode()),
                ("driftline-truncated", b"1" if len(d.value) > DEAD_LETTER_MAX_BYTES else b"0"),
            ]
            messages.append((topic, None, value, headers))
        result = transport.send(messages, DEAD_LETTER_TIMEOUT_S)
        if result.retry or result.rejected:  # the pipeline retries, the batch is not acked
            raise ConnectionError(f"{len(result.retry) + result.rejected} of {len(messages)} dead letters "
                                  f"not acknowledged by Kafka")

    send.close = lambda: transport.shutdown(DEAD_LETTER_TIMEOUT_S)  # type: ignore[attr-defined]
    return send


# Records faust may hold per stream before the take's buffer (1,000: up to 128 MiB of SDK records).
STREAM_BUFFER_RECORDS = 1_000
# Bytes of record values per take (see take.py): 500 of the SDK's largest records, as before.
TAKE_MAX_BYTES = 64 * 1024 * 1024


class TickScheduler:
    """Hands the pipeline's tick to the storage thread without making faust's timer wait for it.

    The timer used to await the tick on the one storage thread, which is often busy for seconds
    storing a batch (and the detector stage's poll and state save run there too): the timer's body
    then outlasted its 1 s interval and faust logged "Timer tick is overlapping" 3-35 times a run.
    Now the body only submits a tick when the previous one has finished, and counts the ticks it
    skipped (``driftline_collector_ticks_skipped_total``): a skipped tick loses nothing, the next
    one closes every window that is due by then.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> ran = []
    >>> ticks = TickScheduler(ThreadPoolExecutor(1), ran.append, skipped=None)
    >>> ticks.submit(1.0); ticks.wait(); ran
    True
    [1.0]
    """

    def __init__(self, executor: Any, tick: Callable[[float], None], skipped: Any) -> None:
        self._executor = executor
        self._tick = tick
        self._skipped = skipped
        self._pending: Any = None

    def submit(self, now_s: float) -> bool:
        """Queue a tick at ``now_s`` unless one is queued or running; True if queued."""
        if self._pending is not None and not self._pending.done():
            if self._skipped is not None:
                self._skipped.inc()
            return False
        self._pending = self._executor.submit(self._run, now_s)
        return True

    def _run(self, now_s: float) -> None:
        try:
            self._tick(now_s)
        except Exception:  # noqa: BLE001 - Pipeline.tick logs its own; anything else is logged here
            logger.exception("collector tick failed")

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the tick in flight, if any (tests and shutdown)."""
        if self._pending is not None:
            self._pending.result(timeout_s)


def build_app(settings: CollectorSettings, pipeline: Pipeline, *, tick_interval_s: float = 1.0) -> Any:
    import faust

    topics = settings.topics
    # A take holds at most batch_size records and TAKE_MAX_BYTES of their values (take.py): an SDK
    # record carries one model's events (1 to ~200), so a bound in records alone gave takes of
    # ~1,000 events at a thousand models, one small insert each; Pipeline.process cuts a take into
    # inserts of at most batch_size events.
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_commit_every=settings.batch_size,
        # Records, not events: an SDK record carries up to 128 KiB, so the buffer is bounded here,
        # not by faust's 4,096: that many SDK records is 512 MiB, and a collector that fell behind
        # held it (its memory followed the backlog to 1.6 GB in the soak).
        stream_buffer_maxsize=STREAM_BUFFER_RECORDS,
        # Per partition and fetch. aiokafka holds what it fetched, decompressed, until faust takes
        # it: with 8 MiB that was ~190 MiB of records in a collector that was behind (tracemalloc);
        # 1 MiB stores as fast (bench_soak at 12,000 events/s).
        consumer_max_fetch_size=1024 * 1024,
        producer_max_request_size=8 * 1024 * 1024,
        # faust only uses its own partition assignor (which co-partitions topics with the same
        # partition count, so partition N of predictions, labels and outcomes go to one collector
        # and one process holds all of a model's detector state) when standby replicas are on;
        # with 0 it falls back to round-robin, which splits a model's predictions and labels.
        table_standby_replicas=1,
        datadir=str(settings.data_dir / "faust" / settings.group_id),  # not the working directory
        # Tansu holds the first JoinGroup until the rebalance timeout expires; faust's 60 s default
        # made a fresh collector idle for a minute. 10 s still leaves room for slow batch writes,
        # since heartbeats come from faust's consumer thread, not the storage thread.
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=1.0,
    )
    # One thread does all storage work: batches are stored in order and detectors see one caller.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftline-store")
    metrics = pipeline.metrics

    def make_agent(topic_name: str, role: str) -> None:
        topic = app.topic(topic_name, value_type=bytes, key_type=bytes, value_serializer="raw",
                          key_serializer="raw", partitions=settings.partitions)

        @app.agent(topic, name=f"driftline-{role}")
        async def consume(stream: Any) -> None:
            loop = asyncio.get_running_loop()
            async for events in take_bounded(stream, settings.batch_size, TAKE_MAX_BYTES,
                                             within=settings.batch_timeout_s):
                records = [
                    RawRecord(topic_name, role, e.message.partition, e.message.offset, e.message.value,
                              e.message.headers or ())
                    for e in events
                ]
                try:
                    await loop.run_in_executor(executor, pipeline.process, records)
                except Exception:  # noqa: BLE001 - stopping: leave the batch unacknowledged
                    logger.warning("batch not stored; stopping without acknowledging it")
                    await app.stop()
                    return
                _update_lag(app, metrics, events)

    for kind in EVENT_KINDS:
        make_agent(topics.for_role(kind.role), kind.role)

    ticks = TickScheduler(executor, pipeline.tick, metrics.ticks_skipped)

    @app.timer(interval=tick_interval_s)
    async def tick() -> None:
        ticks.submit(time.time())  # never awaits the storage thread (see TickScheduler)

    return app


def _update_lag(app: Any, metrics: Any, events: list[Any]) -> None:
    last: dict[Any, int] = {}
    for e in events:
        last[e.message.tp] = max(last.get(e.message.tp, -1), e.message.offset)
    for tp, offset in last.items():
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - lag is best effort
            continue
        if highwater is not None:
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset - 1))


def tune_gc() -> None:
    """Collect garbage less often, and never rescan what start-up loaded.

    The collector allocates millions of short-lived objects a minute while it holds large
    long-lived state (detector windows, predictions awaiting their labels); with CPython's
    default gen-0 threshold of 700 the collector rescans that state constantly (measured: about
    a fifth of the detector stage's CPU). Cycles are rare here (events are plain dicts), so
    collecting every 50,000 allocations costs little memory. ``gc.freeze`` moves everything
    loaded at start-up (spaCy's model, Presidio, faust) out of every later scan.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


ObserverFactory = Callable[[Any, Any], Sequence[Observer]]
"""Builds the pipeline's observers from the open ClickHouse client and the metrics registry."""


def run_collector(settings: CollectorSettings, *, observers: ObserverFactory, registry: Any = None) -> None:
    """Run the collector until SIGINT/SIGTERM (the process entry point of `driftline collector`).

    ``observers`` is called once the store is open and migrated; ``driftline collector``
    (``cli/collector.py``) passes the detector stage (``detectors/stage.py``), so the collector
    itself imports nothing from ``detectors/``.
    """
    import faust
    from prometheus_client import CollectorRegistry, Info, start_http_server

    from driftline.collector.topics import deadletter_configs, ensure_topics
    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.store import ClickHouseWriter, connect, migrate
    from driftline.collector.wiring import build_scrubber

    registry = registry or CollectorRegistry()
    metrics = CollectorMetrics(registry)
    # The effective settings, so an operator (and a test) can see what this process really runs with.
    Info("driftline_collector_settings", "Effective collector settings (ClickHouse password hidden)",
         registry=registry).info(settings.public())
    logger.info("collector settings: %s", settings.public())
    probe = None
    if settings.memory_probe_dir is not None:
        from driftline.collector.memprobe import MemoryProbe

        probe = MemoryProbe(settings.memory_probe_dir, interval_s=settings.memory_probe_interval_s,
                            tracemalloc_frames=settings.memory_probe_tracemalloc_frames)
    client = connect(settings.clickhouse_url, retry_for_s=30)
    migrate(client)
    topics = settings.topics
    ensure_topics(settings.kafka_bootstrap, [*topics.event_topics(), topics.deadletter],
                  partitions=settings.partitions,
                  configs=deadletter_configs(topics, settings.deadletter_retention_h))
    stop = threading.Event()
    send_dead = dead_letter_sender(settings.kafka_bootstrap, topics.deadletter)
    pipeline = Pipeline(
        ClickHouseWriter(client),
        metrics,
        send_dead_letters=send_dead,
        scrubber=build_scrubber(settings, registry),
        observers=observers(client, registry),
        stop=stop,
        max_batch_events=settings.batch_size,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = build_app(settings, pipeline)
    tune_gc()
    if probe is not None:
        probe.start()  # after start-up: tracemalloc then traces only what the running collector allocates

    class _Worker(faust.Worker):  # type: ignore[misc]
        # Tell the storage thread first, so a batch stuck retrying gives up (unacknowledged)
        # instead of holding the shutdown.
        def _on_sigterm(self) -> None:
            stop.set()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            stop.set()
            super()._on_sigint()

    worker = _Worker(app, loglevel="WARNING", quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    finally:
        stop.set()
        for observer in pipeline.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()
        send_dead.close()
        if probe is not None:
            probe.stop()
