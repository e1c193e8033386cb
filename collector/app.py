"""The collector process: the consumer (``consume.BatchConsumer``) over the prediction, label and
outcome topics, the pipeline on one storage thread, the 1 s tick, dead letters.

Offsets: a batch is committed only once its rows are stored, its dead letters published and the
detector stage observed it (``Pipeline.store``, then the next ``store`` or ``observe_stored``);
storage failures are retried inside ``store`` until they succeed or the process stops, and a batch
that was not stored is not committed, so it is consumed again after a restart.
A crash test (SIGKILL mid-stream) proves it (tests/collector/test_crash.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from driftline.collector.config import CollectorSettings
from driftline.collector.decode import DeadLetter
from driftline.collector.consume import BatchConsumer, update_lag
from driftline.collector.pipeline import Observer, Pipeline

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


class TickScheduler:
    """Hands the pipeline's tick to the storage thread without making faust's timer wait for it.

    The timer used to await the tick on the one storage thread, which is often busy for seconds
    storing a batch (and the detector stage's poll and state save run there too): the timer's body
    then outlasted its 1 s interval and faust's timer logged "Timer tick is overlapping" 3-35 times
    a run. Now the body only submits a tick when the previous one has finished, and counts the ticks
    it skipped (``driftline_collector_ticks_skipped_total``): a skipped tick loses nothing, the next
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


def tune_gc() -> None:
    """Collect garbage less often, and never rescan what start-up loaded.

    The collector allocates millions of short-lived objects a minute while it holds large
    long-lived state (detector windows, predictions awaiting their labels); with CPython's
    default gen-0 threshold of 700 the collector rescans that state constantly (measured: about
    a fifth of the detector stage's CPU). Cycles are rare here (events are plain dicts), so
    collecting every 200,000 allocations costs little memory. At 1,000 features a window's close
    makes ~10,000 results that live until they are written: with 50,000 the collector still spent
    ~5 % of its CPU in collections that found next to nothing, ~2 % with 200,000
    (bench/fleet.md). ``gc.freeze`` moves everything loaded at start-up (spaCy's model, Presidio,
    aiokafka) out of every later scan.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)


ObserverFactory = Callable[[Any, Any], Sequence[Observer]]
"""Builds the pipeline's observers from the open ClickHouse client and the metrics registry."""


def run_collector(settings: CollectorSettings, *, observers: ObserverFactory, registry: Any = None) -> None:
    """Run the collector until SIGINT/SIGTERM (the process entry point of `driftline collector`).

    ``observers`` is called once the store is open and migrated; ``driftline collector``
    (``cli/collector.py``) passes the detector stage (``detectors/stage.py``), so the collector
    itself imports nothing from ``detectors/``.
    """
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
        try:
            start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
        except OSError as exc:
            from driftline.sdk.errors import ConfigError

            raise ConfigError(
                f"the collector cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port} "
                f"({exc.strerror}): another server listens there or a connection holds it as its local port; "
                "choose another port with DRIFTLINE_METRICS_PORT (--metrics-port of driftline up)") from None
    if settings.rollup_audit_s > 0:
        from driftline.collector.store.rollup_audit import RollupAudit

        RollupAudit(connect(settings.clickhouse_url), registry, interval_s=settings.rollup_audit_s).start(stop)
    if settings.feature_roll_s > 0:
        from driftline.collector.store.feature_rolls import FeatureRoller

        FeatureRoller(connect(settings.clickhouse_url), registry, interval_s=settings.feature_roll_s,
                      after_s=settings.feature_roll_after_s).start(stop)
    # One thread does all storage work: batches are stored in order and detectors see one caller.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftline-store")
    ticks = TickScheduler(executor, pipeline.tick, metrics.ticks_skipped)
    tune_gc()
    if probe is not None:
        probe.start()  # after start-up: tracemalloc then traces only what the running collector allocates

    consumer = BatchConsumer(settings, pipeline, executor, tick=ticks.submit, on_batch=update_lag(metrics))
    try:
        # SIGTERM and SIGINT stop it after the batch in flight (installed even where a shell left
        # SIGINT ignored for a background job).
        asyncio.run(consumer.run(install_signals=True))
    finally:
        stop.set()
        executor.shutdown(wait=True)  # a tick in flight ends before the observers close
        for observer in pipeline.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()
        send_dead.close()
        if probe is not None:
            probe.stop()
