"""Deadlines against a broker that is down (issue 12, point 7): ``Monitor.flush(timeout_s)``,
``Monitor.close(timeout_s)`` and the Kafka transport's ``export``/``shutdown`` return within their
timeout, and ``close`` counts every event it could not deliver.

How long a call takes is the behaviour under test here, so these tests measure it on the real
clock. The margin is generous for a loaded 2-core machine and still far below what the calls took
when each step had its own timeout (``close(timeout_s=1)``: about 2-3 s; ``export(…, 1.0)`` with
nothing listening: 30 s, kafka-python's default bootstrap wait).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from driftline.collector.broker import BrokerProcess, free_port, start_broker
from driftline.sdk import Monitor, Record, SdkSettings
from driftline.sdk.export.kafka import KafkaExporter
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
MARGIN_S = 0.5
BATCH = 500
LOGGED_IN_OUTAGE = 2_000


class Outage:
    """A broker that goes away: SIGSTOPped (connections open, nothing answers), stopped (refused),
    or a port nothing ever listened on (no producer can be built)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.broker: BrokerProcess | None = None
        if kind == "no-listener":
            self.bootstrap = f"127.0.0.1:{free_port()}"
        else:
            self.broker = start_broker(log_path=tmp_path / "broker.log")
            self.bootstrap = self.broker.bootstrap

    def begin(self) -> None:
        assert self.broker is not None or self.kind == "no-listener"
        if self.kind == "paused":
            self.broker.pause()  # type: ignore[union-attr]
        elif self.kind == "stopped":
            self.broker.stop(timeout_s=0.5)  # type: ignore[union-attr]

    def end(self) -> None:
        if self.broker is not None:
            if self.kind == "paused":
                self.broker.resume()
            self.broker.stop()


@pytest.fixture(params=["paused", "stopped", "no-listener"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    o = Outage(request.param, tmp_path)
    try:
        yield o
    finally:
        o.end()


def monitor_in_outage(outage: Outage) -> tuple[Monitor, int, int]:
    """A monitor that delivered what it logged while the broker was up, then logged more after it
    went away; returns it, the events it logged and those it delivered before the outage."""
    monitor = Monitor(model="deadline", settings=SdkSettings(kafka_bootstrap=outage.bootstrap, topics=unique_topics(),
                                                             batch_size=BATCH))
    before = 0
    if outage.broker is not None:  # the producer holds a connection and metadata when the broker goes
        for i in range(10):
            monitor.log({"i": i}, 0.5)
        assert monitor.flush(30)
        before = 10
    outage.begin()
    for i in range(LOGGED_IN_OUTAGE):
        monitor.log({"i": i}, 0.5)
    # The worker has taken a batch and is inside kafka-python with it: sent and waiting for an ack
    # (paused), waiting to reconnect (stopped) or waiting to bootstrap (no listener).
    wait_for(lambda: monitor.stats().queued <= LOGGED_IN_OUTAGE - BATCH, timeout_s=10, interval_s=0.01)
    time.sleep(0.2)  # encoding and send() take milliseconds; linger_ms is 5
    return monitor, before + LOGGED_IN_OUTAGE, before


def timed(fn: object, *args: object, **kwargs: object) -> tuple[object, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)  # type: ignore[operator]
    return result, time.monotonic() - start


def test_close_returns_within_its_timeout_and_counts_every_undelivered_event(outage: Outage) -> None:
    monitor, logged, delivered = monitor_in_outage(outage)
    ok, elapsed = timed(monitor.close, timeout_s=TIMEOUT_S)
    assert ok is False
    assert elapsed < TIMEOUT_S + MARGIN_S, f"close(timeout_s={TIMEOUT_S}) took {elapsed:.2f} s ({outage.kind})"
    stats = monitor.stats()
    assert stats.queued == stats.pending_retry == 0
    assert stats.exported == delivered
    assert stats.dropped["shutdown"] == logged - delivered, stats  # in-flight batch included
    assert stats.exported + stats.dropped_total == logged, stats


def test_flush_returns_false_within_its_timeout_and_keeps_the_events(outage: Outage) -> None:
    monitor, logged, delivered = monitor_in_outage(outage)
    ok, elapsed = timed(monitor.flush, timeout_s=TIMEOUT_S)
    assert ok is False
    assert elapsed < TIMEOUT_S + MARGIN_S, f"flush(timeout_s={TIMEOUT_S}) took {elapsed:.2f} s ({outage.kind})"
    assert monitor.stats().dropped_total == 0  # a flush that times out drops nothing
    # ...and the close that follows has its own whole deadline, and counts.
    ok, elapsed = timed(monitor.close, timeout_s=TIMEOUT_S)
    assert ok is False
    assert elapsed < TIMEOUT_S + MARGIN_S, f"close(timeout_s={TIMEOUT_S}) took {elapsed:.2f} s ({outage.kind})"
    stats = monitor.stats()
    assert stats.queued == stats.pending_retry == 0
    assert stats.exported == delivered and stats.dropped["shutdown"] == logged - delivered, stats


def test_counts_stay_whole_after_a_paused_broker_comes_back(tmp_path: Path) -> None:
    outage = Outage("paused", tmp_path)
    try:
        monitor, logged, _ = monitor_in_outage(outage)
        monitor.close(timeout_s=TIMEOUT_S)
        outage.broker.resume()  # type: ignore[union-attr]
        # Whatever the abandoned producer had written to its socket may now be processed: it is
        # either still counted as dropped or has moved to exported, never both, never neither.
        time.sleep(1.0)
        stats = monitor.stats()
        assert stats.exported + stats.dropped_total == logged, stats
    finally:
        outage.end()


def records(n: int) -> list[Record]:
    topic = unique_topics().predictions
    return [Record(topic, b"k", b'{"i": %d}' % i) for i in range(n)]


def test_kafka_export_returns_within_its_timeout(outage: Outage) -> None:
    exporter = KafkaExporter(outage.bootstrap)
    batch = records(100)
    if outage.broker is not None:
        assert exporter.export(batch[:1], 30).ok  # connected, with the topic's metadata
    outage.begin()
    result, elapsed = timed(exporter.export, batch, TIMEOUT_S)
    assert elapsed < TIMEOUT_S + MARGIN_S, f"export(…, {TIMEOUT_S}) took {elapsed:.2f} s ({outage.kind})"
    assert result.retry == tuple(range(100)) and result.rejected == 0  # type: ignore[attr-defined]
    _, elapsed = timed(exporter.shutdown, TIMEOUT_S)
    assert elapsed < TIMEOUT_S + MARGIN_S


def test_kafka_shutdown_returns_within_its_timeout_while_an_export_waits(outage: Outage) -> None:
    """The batch exporter calls shutdown() from the closing thread while its worker is inside
    export(): shutdown must not wait for that export, and the export must end with it."""
    exporter = KafkaExporter(outage.bootstrap)
    batch = records(100)
    if outage.broker is not None:
        assert exporter.export(batch[:1], 30).ok
    outage.begin()
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(batch, 4.0)), daemon=True)
    worker.start()
    time.sleep(0.3)  # the worker is now waiting inside kafka-python (acks, reconnect or bootstrap)
    _, elapsed = timed(exporter.shutdown, TIMEOUT_S)
    assert elapsed < TIMEOUT_S + MARGIN_S, f"shutdown({TIMEOUT_S}) took {elapsed:.2f} s ({outage.kind})"
    # A producer that was built is force-closed, which fails its records; one still bootstrapping
    # gives up within the export's own timeout. Either way nothing was delivered.
    worker.join(10)
    assert not worker.is_alive()
    assert results[0].retry == tuple(range(100))  # type: ignore[attr-defined]
    assert exporter.export(batch, TIMEOUT_S).retry == tuple(range(100))  # closed: sends nothing
