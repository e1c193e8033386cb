"""Takes bounded by bytes as well as records: many small records (a fleet of models) make large
inserts, and every event is stored once."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import pytest

from driftline.sdk.contract import format_timestamp
from driftline.sdk.ids import uuid7
from tests.collector.test_crash import create_topics
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration

N = 12_000
MODELS = 600


def produce_fleet(bootstrap: str, topic: str, prefix: str) -> None:
    """One event per record, the models round-robin: the shape of SDK records at a thousand models."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for i in range(N):
        model = f"{prefix}-{i % MODELS}"
        event = {"schema_version": 1, "type": "prediction", "event_id": uuid7(),
                 "timestamp": format_timestamp(time.time_ns()), "model": model, "model_version": "1",
                 "features": {"x": i * 0.5}, "prediction": i % 2}
        producer.send(topic, key=model.encode(), value=json.dumps(event).encode())
    producer.flush(60)
    producer.close()


def histogram(metrics_text: str, name: str) -> tuple[float, float]:
    """(sum, count) of a Prometheus histogram in exposition text."""
    values = {}
    for line in metrics_text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(name + suffix + " "):
                values[suffix] = float(line.split()[1])
    return values["_sum"], values["_count"]


def test_a_backlog_of_small_records_is_stored_in_large_inserts(kafka_bootstrap: str, ch_client: Any,
                                                                collector_factory: Any) -> None:
    topics = unique_topics()
    prefix = f"fleet-{uuid.uuid4().hex[:6]}"
    create_topics(kafka_bootstrap, topics)
    produce_fleet(kafka_bootstrap, topics.predictions, prefix)
    proc = collector_factory(topics, extra_env={"DRIFTLINE_COLLECTOR_BATCH_SIZE": "6000",
                                                "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "2"})

    def stored() -> tuple[int, int]:
        row = ch_client.query("SELECT count(), uniqExact(event_id) FROM driftline.predictions WHERE model LIKE %(p)s",
                              parameters={"p": prefix + "-%"}).result_rows[0]
        return int(row[0]), int(row[1])

    wait_for(lambda: stored()[0] >= N, timeout_s=180)
    assert stored() == (N, N)
    port = proc.env["DRIFTLINE_METRICS_PORT"]

    def batches() -> tuple[float, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        return histogram(text, "driftline_collector_batch_events")

    # The histogram is observed after the insert returns, so the rows can be visible a moment first.
    wait_for(lambda: batches()[0] >= N, timeout_s=30)
    total, inserts = batches()
    assert total == N
    # A take bounded by records alone (500 records: 500 events here) needed 24 inserts; bounded by
    # batch_size records and 64 MiB, the backlog goes in inserts of up to 6,000 events.
    assert inserts <= 6, f"{inserts:.0f} inserts for {N} events"
