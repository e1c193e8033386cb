"""The broker goes away mid-stream: log() keeps returning at once, the queue holds what fits,
overflow is counted exactly, and what was queued arrives when the broker is back."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from driftline.collector.embedded.broker import start_broker
from driftline.collector.topics import ensure_topics
from driftline.sdk import Monitor, SdkSettings
from driftline.sdk.contract import unpack
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Read a topic from the start, assigning every partition explicitly (no group, no rebalance)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    partitions = None
    while not partitions and time.monotonic() < deadline:
        consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"topic {topic} not found"
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen: list[dict[str, Any]] = []
    while len(seen) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            for message in batch:
                seen.extend(json.loads(v) for v in unpack(message.value, message.headers))
    consumer.close()
    return seen


def timed_logs(monitor: Monitor, start: int, n: int) -> list[float]:
    costs = []
    for i in range(start, start + n):
        t0 = time.perf_counter_ns()
        monitor.log({"i": i}, 0.5)
        costs.append((time.perf_counter_ns() - t0) / 1000)
    return costs


def report(label: str, costs_us: list[float]) -> None:
    costs = sorted(costs_us)
    print(f"\n{label}: log() p50 {statistics.median(costs):.1f} us, p99 {costs[int(len(costs) * 0.99)]:.1f} us, "
          f"max {costs[-1]:.1f} us over {len(costs)} calls")


def test_broker_restart_loses_nothing_within_the_queue_bound(tmp_path: Path) -> None:
    topics = unique_topics()
    broker = start_broker(log_path=tmp_path / "broker.log")
    port = broker.port
    queue_size = 2_000
    monitor = Monitor(model="outage", settings=SdkSettings(kafka_bootstrap=broker.bootstrap, topics=topics,
                                                           queue_size=queue_size, batch_size=200))
    try:
        timed_logs(monitor, 0, 100)
        assert monitor.flush(30)
        assert len(consume_all(broker.bootstrap, topics.predictions, 100)) == 100

        broker.stop()  # memory storage: the first 100 events go with it, as the README says
        down_costs = timed_logs(monitor, 100, 5_000)
        report("broker down", down_costs)
        stats = monitor.stats()
        queued = stats.queued + stats.pending_retry
        dropped = stats.dropped["queue_full"]
        assert dropped > 0
        assert queued + dropped + stats.exported - 100 <= 5_000
        # The queue holds exactly its bound (in-flight batches included); the rest is counted.
        assert dropped == 5_000 - queue_size

        # A restarted embedded stack recreates its topics first (`driftline up` and the collector
        # call ensure_topics at start). A producer that reconnects in the instant between the
        # broker's start and that can lose what it sends then: Tansu acknowledged such records
        # and no consumer ever read them (README, Known limits). So the outage lasts long enough
        # for the exporter to back off (its retry delay doubles up to 5 s), and the broker comes
        # back, with its topic, inside that pause; flush() then wakes the exporter.
        time.sleep(8)
        broker = start_broker(port, log_path=tmp_path / "broker2.log")
        ensure_topics(broker.bootstrap, [topics.predictions])
        assert monitor.flush(60), monitor.stats()
        assert monitor.stats().dropped["broker_error"] == 0, monitor.stats()
        delivered = consume_all(broker.bootstrap, topics.predictions, 5_000 - dropped)
        ids = [e["features"]["i"] for e in delivered]
        assert len(set(ids)) == 5_000 - dropped  # (a lost ack may repeat an event; the collector dedups)
        # The oldest events are the ones kept: overflow drops the newest.
        assert set(ids) == set(range(100, 100 + 5_000 - dropped))
        assert monitor.stats().dropped["queue_full"] == dropped
    finally:
        monitor.close(5)
        broker.stop()


def test_paused_broker_never_blocks_log_and_everything_arrives(tmp_path: Path) -> None:
    topics = unique_topics()
    with start_broker(log_path=tmp_path / "broker.log") as broker:
        monitor = Monitor(model="pause", settings=SdkSettings(kafka_bootstrap=broker.bootstrap, topics=topics,
                                                              batch_size=100))
        timed_logs(monitor, 0, 10)
        assert monitor.flush(30)
        broker.pause()
        try:
            costs = timed_logs(monitor, 10, 3_000)
            report("broker paused (SIGSTOP)", costs)
            # log() did not wait for the broker: 3000 calls finished while it could not answer.
            assert monitor.stats().exported == 10
        finally:
            broker.resume()
        assert monitor.flush(60), monitor.stats()
        assert monitor.stats().dropped_total == 0
        events = consume_all(broker.bootstrap, topics.predictions, 3_010)
        assert {e["features"]["i"] for e in events} == set(range(3_010))
        monitor.close(5)


def test_collector_keeps_storing_after_the_broker_pauses(broker: Any, ch_client: Any, collector_factory: Any) -> None:
    topics = unique_topics()
    collector_factory(topics)
    monitor = Monitor(model="pause-e2e", settings=SdkSettings(kafka_bootstrap=broker.bootstrap, topics=topics))
    for i in range(500):
        monitor.log({"i": i}, 1)
    assert monitor.flush(30)
    broker.pause()
    try:
        for i in range(500, 1_000):
            monitor.log({"i": i}, 1)
        time.sleep(1)
    finally:
        broker.resume()
    assert monitor.flush(60)
    count = lambda: ch_client.query("SELECT count() FROM driftline.predictions WHERE model = 'pause-e2e'").result_rows[0][0]  # noqa: E731
    wait_for(lambda: count() == 1_000, timeout_s=90)
    monitor.close(5)
