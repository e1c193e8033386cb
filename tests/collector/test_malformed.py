"""Malformed records go to the dead-letter topic with a reason; their good neighbours are stored."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from driftline.sdk.ids import uuid7
from driftline.sdk.contract import format_timestamp
from tests.conftest import unique_topics, wait_for
from tests.collector.test_crash import create_topics

pytestmark = pytest.mark.integration


def good(model: str, i: int) -> bytes:
    return json.dumps({"schema_version": 1, "type": "prediction", "event_id": uuid7(),
                       "timestamp": format_timestamp(time.time_ns()), "model": model, "features": {"i": i},
                       "prediction": 1}).encode()


def test_bad_records_are_dead_lettered_with_reasons(kafka_bootstrap: str, ch_client: Any, collector_factory: Any) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topics = unique_topics()
    create_topics(kafka_bootstrap, topics)
    model = f"bad-{uuid.uuid4().hex[:6]}"
    base = json.loads(good(model, 0))
    bad: dict[str, bytes] = {
        "bad_json": b'{"schema_version": 1, "type": ',
        "bad_utf8": b'{"model": "\xff\xfe"}',
        "schema:features.age": json.dumps({**base, "event_id": uuid7(), "features": {"age": [1, 2]}}).encode(),
        "schema:model": json.dumps({k: v for k, v in base.items() if k != "model"} | {"event_id": uuid7()}).encode(),
        "schema:latency_ms": json.dumps({**base, "event_id": uuid7(), "latency_ms": "slow"}).encode(),
        "too_large": json.dumps({**base, "event_id": uuid7(), "features": {"text": "x" * 5_000_000}}).encode(),
        "wrong_topic": json.dumps({"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": base["timestamp"],
                                   "model": model, "prediction_id": uuid7(), "label": 1}).encode(),
        "schema:$": b"[1, 2, 3]",
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=16 * 1024 * 1024)
    i = 0
    for value in bad.values():
        producer.send(topics.predictions, key=model.encode(), value=good(model, i))
        producer.send(topics.predictions, key=model.encode(), value=value)
        i += 1
    producer.send(topics.predictions, key=model.encode(), value=good(model, i))
    producer.flush(30)
    producer.close()
    collector_factory(topics)

    count = lambda: ch_client.query("SELECT count() FROM driftline.predictions WHERE model = %(m)s",  # noqa: E731
                                    parameters={"m": model}).result_rows[0][0]
    wait_for(lambda: count() == len(bad) + 1, timeout_s=120)

    consumer = KafkaConsumer(topics.deadletter, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=5000, fetch_max_bytes=64 * 1024 * 1024)
    letters = []
    deadline = time.monotonic() + 60
    while len(letters) < len(bad) and time.monotonic() < deadline:
        letters += [{k: v.decode() for k, v in m.headers} | {"size": len(m.value)} for m in consumer]
    consumer.close()
    assert len(letters) == len(bad)
    got = sorted(l["driftline-reason"] + (":" + l["driftline-detail"].split(":")[0] if l["driftline-reason"] == "schema" else "")
                 for l in letters)
    assert got == sorted(bad)
    for letter in letters:
        assert letter["driftline-source"].startswith(topics.predictions + "/")
        assert letter["size"] <= 256 * 1024  # the 5 MB payload is truncated on the dead-letter topic
    too_large = next(l for l in letters if l["driftline-reason"] == "too_large")
    assert too_large["driftline-truncated"] == "1"
