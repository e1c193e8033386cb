"""The drain's view of the broker, on the real Tansu broker and the kafka-python the lock pins:
what a consumer group has not committed yet, in records and in events."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from driftline.collector.topics import BrokerBacklog, ensure_topics
from driftline.sdk.contract import BATCH_HEADER

pytestmark = pytest.mark.integration


def test_backlog_counts_uncommitted_records_and_the_events_inside_them(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic, group = f"backlog-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(10):  # partition 0: 10 records of 3 events each (the SDK's NDJSON framing)
        producer.send(topic, b"{}\n{}\n{}", partition=0, headers=[BATCH_HEADER])
    for i in range(4):  # partition 1: 4 single-event records (any producer)
        producer.send(topic, b"{}", partition=1)
    producer.flush(10)
    producer.close()

    with BrokerBacklog(kafka_bootstrap, group, [topic]) as backlog:
        assert backlog.behind() == {TopicPartition(topic, 0): 10, TopicPartition(topic, 1): 4}
        assert backlog.events_behind() == 34
        committer: Any = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        try:
            committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(7, "", -1),
                              TopicPartition(topic, 1): OffsetAndMetadata(4, "", -1)})
        finally:
            committer.close(autocommit=False)
        assert backlog.behind() == {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 0}
        assert backlog.total() == 3 and backlog.events_behind() == 9


def test_backlog_raises_instead_of_reporting_nothing_when_the_broker_is_gone() -> None:
    from driftline.collector.embedded.broker import free_port

    with pytest.raises(Exception):  # noqa: B017 - any client error; what matters is that it is not 0
        with BrokerBacklog(f"127.0.0.1:{free_port()}", "g", ["t"], request_timeout_ms=1000) as backlog:
            backlog.total()


def test_dead_letter_topic_gets_the_short_retention_at_creation_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead letters are raw (unscrubbed): their topic is created with, and re-set to, retention.ms
    from deadletter_retention_h; the event topics get no config. A fake admin records the calls
    (the embedded Tansu accepts topic configs and ignores them, so it cannot show them)."""
    import kafka.admin

    from driftline.collector.config import CollectorSettings
    from driftline.collector.topics import deadletter_configs
    from driftline.sdk.contract import Topics
    from driftline.sdk.errors import ConfigError

    calls: dict[str, Any] = {"created": [], "altered": []}
    existing: set[str] = set()

    class FakeAdmin:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def list_topics(self) -> list[str]:
            return sorted(existing)

        def create_topics(self, new: list[Any]) -> None:
            calls["created"] += [(t.name, dict(t.topic_configs)) for t in new]
            existing.update(t.name for t in new)

        def alter_configs(self, resources: list[Any]) -> None:
            calls["altered"] += [(r.name, dict(r.configs)) for r in resources]

        def close(self) -> None:
            pass

    monkeypatch.setattr(kafka.admin, "KafkaAdminClient", FakeAdmin)
    topics = Topics.with_prefix("dl")
    settings = CollectorSettings.build(env={"DRIFTLINE_DEADLETTER_RETENTION_H": "6"})
    assert settings.deadletter_retention_h == 6.0 and CollectorSettings().deadletter_retention_h == 24.0
    with pytest.raises(ConfigError, match="DRIFTLINE_DEADLETTER_RETENTION_H"):
        CollectorSettings(deadletter_retention_h=0)
    configs = deadletter_configs(topics, settings.deadletter_retention_h)
    ensure_topics("127.0.0.1:1", [*topics.event_topics(), topics.deadletter], configs=configs)
    assert dict(calls["created"]) == {**{t: {} for t in topics.event_topics()},
                                      topics.deadletter: {"retention.ms": str(6 * 3_600_000)}}
    assert calls["altered"] == []
    ensure_topics("127.0.0.1:1", [*topics.event_topics(), topics.deadletter], configs=configs)  # exists now
    assert calls["altered"] == [(topics.deadletter, {"retention.ms": "21600000"})]
