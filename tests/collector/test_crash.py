"""Collector killed with SIGKILL mid-stream and restarted: every event stored exactly once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from driftline.sdk.ids import uuid7
from driftline.sdk.contract import format_timestamp
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration

N = 30_000


def create_topics(bootstrap: str, topics: Any) -> None:
    """The topics as ``driftline up`` creates them before anything produces (the collector's
    partition count). A topic the broker auto-creates for the first producer has its own count,
    and a collector then took ~60 s longer to get its first records."""
    from driftline.collector.config import CollectorSettings
    from driftline.collector.topics import ensure_topics

    ensure_topics(bootstrap, [*topics.event_topics(), topics.deadletter], partitions=CollectorSettings().partitions)


def produce(bootstrap: str, topic: str, model: str, n: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for i in range(n):
        event = {"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": format_timestamp(time.time_ns()),
                 "model": model, "model_version": "1", "features": {"i": i, "x": i * 0.5}, "prediction": i % 2}
        producer.send(topic, key=model.encode(), value=json.dumps(event).encode())
    producer.flush(60)
    producer.close()


def counts(ch_client: Any, model: str) -> tuple[int, int]:
    row = ch_client.query("SELECT count(), uniqExact(event_id) FROM driftline.predictions WHERE model = %(m)s",
                          parameters={"m": model}).result_rows[0]
    return int(row[0]), int(row[1])


def test_sigkill_mid_stream_then_restart_stores_every_event_once(kafka_bootstrap: str, ch_client: Any,
                                                                 collector_factory: Any) -> None:
    topics = unique_topics()
    model = f"crash-{uuid.uuid4().hex[:6]}"
    create_topics(kafka_bootstrap, topics)
    produce(kafka_bootstrap, topics.predictions, model, N)
    group = f"g-crash-{uuid.uuid4().hex[:6]}"
    # Takes of at most 2,000 single-event records (batch_size): the kill lands mid-stream (15 takes).
    env = {"DRIFTLINE_COLLECTOR_BATCH_SIZE": "2000"}
    first = collector_factory(topics, group_id=group, extra_env=env)
    wait_for(lambda: counts(ch_client, model)[0] >= 3_000, timeout_s=120, interval_s=0.05)
    first.kill()
    at_kill = counts(ch_client, model)[0]
    print(f"\nkilled the collector with {at_kill} of {N} events stored")
    assert at_kill < N, "the collector finished before it was killed; the test proves nothing"

    collector_factory(topics, group_id=group, extra_env=env)
    wait_for(lambda: counts(ch_client, model)[0] >= N, timeout_s=180)
    time.sleep(3)  # anything replayed late would show up now
    total, distinct = counts(ch_client, model)
    assert (total, distinct) == (N, N)
    stored_i = ch_client.query("SELECT min(features_num['i']), max(features_num['i']), sum(features_num['i']) "
                               "FROM driftline.predictions WHERE model = %(m)s", parameters={"m": model}).result_rows[0]
    assert stored_i == (0, N - 1, N * (N - 1) / 2)
