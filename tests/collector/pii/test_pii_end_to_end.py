"""PII never reaches storage or logs: two corpora full of PII through the SDK (a stratified sample
of the Faker recall corpus: every entity type of every one of its 9 locales, 36 of its 306
messages; test_shapes.py and bench/bench_pii_recall.py measure recall on all of them) and a raw
producer (the synthetic corpus, plus records that are dead-lettered), the broker and the
collector; then a dump of every ClickHouse table and every line the collector logged hold none
of the pattern-type values."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.collector.pii.pii_corpus import pii_corpus
from tests.collector.pii.recall_kit import load_recall_corpus, pattern_values, stratified_sample
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration


def dump_everything(ch_client: Any) -> str:
    tables = [r[0] for r in ch_client.query(
        "SELECT name FROM system.tables WHERE database = 'driftline' AND engine NOT LIKE '%View%'").result_rows]
    assert "predictions" in tables and "labels" in tables and "outcomes" in tables
    parts = []
    for table in tables:
        parts.append(ch_client.raw_query(f"SELECT * FROM driftline.`{table}` FORMAT TabSeparated").decode("utf-8", "replace"))
    return "\n".join(parts)


def _stored(ch_client: Any, model: str) -> int:
    return sum(ch_client.query(f"SELECT count() FROM driftline.{t} WHERE model = %(m)s",
                               parameters={"m": model}).result_rows[0][0] for t in ("predictions", "labels", "outcomes"))


def test_no_pattern_pii_in_any_table_or_log_line_after_ingest(kafka_bootstrap: str, ch_client: Any,
                                                              collector_factory: Any) -> None:
    from kafka import KafkaProducer

    from driftline.sdk import Monitor, SdkSettings

    corpus, whole = pii_corpus(), load_recall_corpus()
    recall = stratified_sample(whole)
    pairs = lambda records: {(r["locale"], e) for r in records for e, _ in r["entities"]}  # noqa: E731
    assert pairs(recall) == pairs(whole) and len(recall) < len(whole) / 5
    topics = unique_topics()
    collector = collector_factory(topics)
    # The recall corpus through the SDK, as a model server logs a free-text feature.
    model = f"pii-{uuid.uuid4().hex[:6]}"
    monitor = Monitor(model=model, settings=SdkSettings(kafka_bootstrap=kafka_bootstrap, topics=topics, batch_size=100))
    for r in recall:
        monitor.log({"message": r["text"], "locale": r["locale"]}, "billing")
    assert monitor.flush(60), monitor.stats()
    monitor.close()
    # The synthetic corpus (labels, outcomes, errors, tags) and records that fail validation with
    # PII inside them: dead-lettered (raw, by design, on the short-retention topic) and logged.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for event in corpus.events:
        producer.send(topics.for_type(event["type"]), key=event["model"].encode(), value=json.dumps(event).encode())
    bad = [{**corpus.events[0], "event_id": "not-a-uuid", "request_id": corpus.secrets[i]} for i in range(3)]
    bad.append({"schema_version": 1, "type": "prediction", "features": {"email": corpus.secrets[5]}})
    for event in bad:
        producer.send(topics.predictions, value=json.dumps(event).encode())
    producer.send(topics.predictions, value=f"not json {corpus.secrets[7]}".encode())
    producer.flush(30)
    producer.close()

    wait_for(lambda: _stored(ch_client, model) == len(recall), timeout_s=180)
    wait_for(lambda: _stored(ch_client, "support-router") >= len(corpus.events), timeout_s=120)
    wait_for(lambda: collector.log().count("dead-lettered") >= len(bad) + 1, timeout_s=60)
    dump = dump_everything(ch_client)
    secrets = sorted(set(corpus.secrets) | set(pattern_values(recall)))
    assert len(secrets) > 600
    leaked = [s for s in secrets if s in dump]
    assert leaked == [], f"{len(leaked)} PII values reached ClickHouse"
    log = collector.log()
    assert log.count("\n") >= len(bad) + 1  # the collector did log (dead letters among them)
    leaked_to_log = [s for s in secrets if s in log]
    assert leaked_to_log == [], f"{len(leaked_to_log)} PII values in the collector's log"
    caught = sum(1 for _, name in corpus.names if name.split()[-1] not in dump)
    share = caught / len(corpus.names)
    print(f"\nnames caught end to end: {caught}/{len(corpus.names)} = {share:.0%}")
    assert share >= 0.75
    # Scrubbed, not dropped: the placeholders are there, typed by the shape that matched.
    for placeholder in ("<EMAIL_ADDRESS>", "<PHONE_NUMBER>", "<CREDIT_CARD>", "<IBAN_CODE>", "<FR_NIR>",
                        "<IT_FISCAL_CODE>", "<DATE_OF_BIRTH>"):
        assert placeholder in dump, placeholder
