"""The Kafka transport against the real embedded broker: framed exports, ready-made records
(``send``, what the collector's dead letters use) and a fresh producer after a failure.
Its deadlines against a broker that is down are in tests/sdk/test_deadlines.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftline.collector.embedded.broker import start_broker
from driftline.collector.topics import ensure_topics
from driftline.sdk import Record
from driftline.sdk.contract import BATCH_HEADER, unpack
from driftline.sdk.export.kafka import KafkaExporter
from tests.conftest import unique_topics

pytestmark = pytest.mark.integration


def read(bootstrap: str, topic: str, expected: int) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                             consumer_timeout_ms=5000)
    messages: list[Any] = []
    for _ in range(6):
        messages += list(consumer)
        if len(messages) >= expected:
            break
    consumer.close()
    return messages


def test_export_frames_events_and_send_keeps_records_as_they_are(kafka_bootstrap: str) -> None:
    topics = unique_topics()
    ensure_topics(kafka_bootstrap, [topics.predictions, topics.deadletter])
    exporter = KafkaExporter(kafka_bootstrap)
    try:
        result = exporter.export([Record(topics.predictions, b"m", b'{"i": %d}' % i) for i in range(3)], 30)
        assert result.ok and result.rejected == 0
        headers = [("driftline-reason", b"bad_json"), ("driftline-truncated", b"0")]
        result = exporter.send([(topics.deadletter, None, b"not json\nat all", headers),
                                (topics.deadletter, b"k", b"{}", [])], 30)
        assert result.ok and result.rejected == 0
    finally:
        exporter.shutdown(5)
    [framed] = read(kafka_bootstrap, topics.predictions, 1)
    assert framed.key == b"m" and (BATCH_HEADER[0], BATCH_HEADER[1]) in framed.headers
    assert unpack(framed.value, framed.headers) == [b'{"i": 0}', b'{"i": 1}', b'{"i": 2}']
    letters = read(kafka_bootstrap, topics.deadletter, 2)
    # No framing, headers untouched (sorted: the two may land on different partitions).
    assert sorted((m.value, m.key, m.headers) for m in letters) == [
        (b"not json\nat all", None, headers), (b"{}", b"k", [])]


def test_a_failed_send_starts_over_on_a_fresh_producer(tmp_path: Path) -> None:
    topic = unique_topics().deadletter
    broker = start_broker(log_path=tmp_path / "broker.log")
    exporter = KafkaExporter(broker.bootstrap)
    try:
        ensure_topics(broker.bootstrap, [topic])
        assert exporter.send([(topic, None, b"first", [])], 30).ok
        before = exporter._producer
        assert before is not None
        broker.stop()
        assert exporter.send([(topic, None, b"lost", [])], 1.0).retry == (0,)
        assert exporter._producer is None  # the producer that failed is gone
        broker = start_broker(broker.port, log_path=tmp_path / "broker2.log")
        ensure_topics(broker.bootstrap, [topic])
        assert exporter.send([(topic, None, b"second", [])], 30).ok
        assert exporter._producer is not None and exporter._producer is not before
        assert [m.value for m in read(broker.bootstrap, topic, 1)] == [b"second"]  # memory storage: "first" went
    finally:
        exporter.shutdown(5)
        broker.stop()
