"""Bounded embedded broker (issue 12 point 6): what Tansu frees, the produce gate, topic rotation.

Real Tansu (its own broker per module: these tests delete topics and send DeleteRecords, which
panics a task in Tansu's memory engine), real clients, real collector process for the end-to-end
rotation. Memory is compared (freed or not), never timed.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import CollectorProcess, unique_topics, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from driftline.collector.embedded.produce_gate import start_gated_broker

    broker, gate = start_gated_broker(log_path=tmp_path_factory.mktemp("gated") / "broker.log")
    try:
        yield broker, gate
    finally:
        gate.stop()
        broker.stop()


def _topic(bootstrap: str, partitions: int = 2) -> str:
    from driftline.collector.topics import ensure_topics

    name = f"r{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [name], partitions=partitions)
    return name


def _producer(bootstrap: str, **kw: Any) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, retries=0, **kw)


class GroupReader:
    """A consumer that stores what it reads (in a list) and commits after each poll, like the collector.

    Partitions are assigned (no group join, which takes seconds on Tansu); positions start at the
    group's committed offsets, or the earliest offset when there are none.
    """

    def __init__(self, bootstrap: str, group_id: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.group_id, self.topic, self.partitions = bootstrap, group_id, topic, partitions
        self.seen: list[bytes] = []
        self.starts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.starts += 1
        self._stop.clear()
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False,
                                 auto_offset_reset="earliest", client_id="test-reader")
        consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])

        def run() -> None:
            try:
                while not self._stop.is_set():
                    got = consumer.poll(timeout_ms=100)
                    for records in got.values():
                        self.seen.extend(r.value for r in records)
                    if got:
                        consumer.commit()
            finally:
                consumer.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)


def test_delete_records_is_unsupported_on_tansu_and_the_broker_lives_on(tmp_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from driftline.collector.embedded.broker import start_broker
    from driftline.collector.embedded.broker_retention import DeleteRecordsUnsupported, trim_once

    with start_broker(log_path=tmp_path / "broker.log") as broker:
        topic = _topic(broker.bootstrap, 1)
        producer = _producer(broker.bootstrap)
        for i in range(100):
            producer.send(topic, str(i).encode())
        producer.flush()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="g-trim", enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 100)  # as if all 100 were read
        consumer.commit()
        with pytest.raises(DeleteRecordsUnsupported):
            trim_once(broker.bootstrap, "g-trim", [topic])
        assert broker.proc.poll() is None
        # The broker still serves, and nothing was deleted: the records are all still readable.
        assert producer.send(topic, b"after").get(10).offset >= 100
        consumer.seek(tp, 0)
        values: list[bytes] = []
        wait_for(lambda: values.extend(r.value for rs in consumer.poll(timeout_ms=200).values() for r in rs)
                 or len(values) >= 101, 30)
        assert values[0] == b"0"
        consumer.close()
        producer.close()


def test_gate_relays_and_holds_produce_until_released(gated: tuple[Any, Any]) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from driftline.collector.embedded.produce_gate import CLIENT_ID

    _broker, gate = gated
    topic = _topic(gate.address, 1)
    producer = _producer(gate.address, acks="all")
    assert producer.send(topic, b"first").get(10).offset == 0
    fire_and_forget = _producer(gate.address, acks=0)
    fire_and_forget.send(topic, b"acks0")
    fire_and_forget.flush()
    # Our own clients (CLIENT_ID) pass a closed gate; this one reads what reached the broker.
    reader = KafkaConsumer(bootstrap_servers=gate.address, client_id=CLIENT_ID)
    tp = TopicPartition(topic, 0)
    reader.assign([tp])
    values: list[bytes] = []

    def read_all() -> list[bytes]:
        reader.seek(tp, 0)
        values.clear()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(values) < 3:
            values.extend(r.value for rs in reader.poll(timeout_ms=200).values() for r in rs)
        return values

    wait_for(lambda: read_all() == [b"first", b"acks0"], 20)
    wait_for(lambda: gate.produce_in_flight == 0, 10)  # acks=0 requests get no answer and are not counted

    gate.hold_produce()
    try:
        future = producer.send(topic, b"held")
        time.sleep(1.0)
        assert not future.is_done
        assert gate.held >= 1
        assert read_all() == [b"first", b"acks0"]  # the held record has not reached the broker
    finally:
        gate.release()
    assert future.get(10).offset == 2
    reader.close()
    producer.close()
    fire_and_forget.close()


def _broker_rss(broker: Any) -> int:
    from driftline.collector.embedded.broker_retention import rss_bytes

    return rss_bytes(broker.proc.pid)


def test_rotation_frees_broker_memory_and_loses_no_acknowledged_record(gated: tuple[Any, Any]) -> None:
    from driftline.collector.embedded.broker_retention import committed_and_end, rotate_topics

    broker, gate = gated
    topic, group = _topic(gate.address, 2), f"g-{uuid.uuid4().hex[:6]}"
    reader = GroupReader(gate.address, group, topic, 2)
    reader.start()
    acked: list[bytes] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        producer = _producer(gate.address, acks="all", request_timeout_ms=5000, batch_size=64 * 1024)
        i = 0
        while not stop.is_set():
            values = [f"{i + k:09d}".encode() + b"x" * 200 for k in range(500)]
            futures = [(v, producer.send(topic, v)) for v in values]
            i += len(values)
            for v, f in futures:
                try:
                    f.get(30)
                    acked.append(v)
                except Exception as exc:  # noqa: BLE001 - counted: a failed send is not acknowledged
                    failed.append(exc)
        producer.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 150_000, 120)
    before = _broker_rss(broker)
    result = None
    for _ in range(10):  # the reader may be a poll behind when the rotation checks
        result = rotate_topics(gate.address, group, [topic], gate=gate, stop_consumers=reader.stop,
                               start_consumers=reader.start, drain_timeout_s=5)
        if result.rotated:
            break
    assert result is not None and result.rotated, result
    assert result.records_freed >= 150_000
    after = _broker_rss(broker)
    wait_for(lambda: len(acked) >= result.records_freed + 20_000, 120)  # traffic goes on after the rotation
    stop.set()
    thread.join(60)
    wait_for(lambda: set(acked) <= set(reader.seen), 60)
    reader.stop()
    assert reader.starts == 2
    assert len(set(reader.seen)) == len(set(acked))
    # The new topic holds only what was produced after the rotation.
    held = sum(end for _c, end in committed_and_end(gate.address, group, [topic]).values())
    assert held == len(acked) - result.records_freed
    assert after < before - 20 * 2**20, (before, after)  # > 150k records of ~200 B were freed


def test_rotation_is_abandoned_while_the_group_lags(gated: tuple[Any, Any]) -> None:
    from driftline.collector.embedded.broker_retention import committed_and_end, rotate_topics

    _broker, gate = gated
    topic, group = _topic(gate.address, 1), f"g-{uuid.uuid4().hex[:6]}"
    producer = _producer(gate.address, acks="all")
    for i in range(1000):
        producer.send(topic, str(i).encode())
    producer.flush()
    calls: list[str] = []
    result = rotate_topics(gate.address, group, [topic], gate=gate, stop_consumers=lambda: calls.append("stop"),
                           start_consumers=lambda: calls.append("start"), drain_timeout_s=1)
    assert not result.rotated and "did not catch up" in result.reason
    assert calls == []
    assert gate.mode == 0  # released
    assert producer.send(topic, b"after").get(10).offset == 1000  # nothing was deleted
    assert sum(end for _c, end in committed_and_end(gate.address, group, [topic]).values()) == 1001
    producer.close()


def test_the_collector_stores_every_event_once_across_a_rotation(gated: tuple[Any, Any], clickhouse_url: str,
                                                                  ch_client: Any, tmp_path: Path) -> None:
    from driftline.collector.embedded.broker import free_port
    from driftline.collector.topics import ensure_topics
    from driftline.collector.embedded.broker_retention import rotate_topics
    from driftline.sdk import Monitor, SdkSettings

    _broker, gate = gated
    topics = unique_topics("rot")
    all_topics = [topics.predictions, topics.labels, topics.outcomes]
    ensure_topics(gate.address, [*all_topics, topics.deadletter], partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": gate.address, "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
           "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0], "DRIFTLINE_GROUP_ID": group,
           "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "0.2",
           "DRIFTLINE_DATA_DIR": str(tmp_path / "data"), "DRIFTLINE_PARTITIONS": "2"}
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    model = f"rot-{uuid.uuid4().hex[:6]}"
    settings = SdkSettings(kafka_bootstrap=gate.address, topics=topics)
    monitor = Monitor(model=model, settings=settings)

    def stored() -> int:
        return int(ch_client.query(f"SELECT count() FROM driftline.predictions WHERE model = '{model}'").result_rows[0][0])

    try:
        for i in range(3000):
            monitor.log({"x": float(i)}, 0.5)
        assert monitor.flush(30)
        wait_for(lambda: stored() >= 3000, 120)

        def restart_collector() -> None:
            nonlocal collector
            collector = CollectorProcess(env, tmp_path / "collector-2.log").start()

        result = None
        for _ in range(20):
            result = rotate_topics(gate.address, group, all_topics, gate=gate, stop_consumers=collector.stop,
                                   start_consumers=restart_collector, drain_timeout_s=5)
            if result.rotated:
                break
        assert result is not None and result.rotated, result
        for i in range(2000):
            monitor.log({"x": float(i)}, 0.5)
        assert monitor.flush(30)
        wait_for(lambda: stored() >= 5000, 180)
        time.sleep(1)
        distinct = ch_client.query(f"SELECT uniqExact(event_id) FROM driftline.predictions "
                                   f"WHERE model = '{model}'").result_rows[0][0]
        assert (stored(), distinct) == (5000, 5000)
    finally:
        monitor.close(5)
        collector.stop()


def test_a_broker_restarted_behind_the_same_gate_serves_its_clients_again(tmp_path: Path) -> None:
    from driftline.collector.topics import ensure_topics
    from driftline.collector.embedded.produce_gate import start_broker_behind, start_gated_broker

    broker, gate = start_gated_broker(log_path=tmp_path / "broker.log")
    try:
        assert broker.bootstrap == gate.address
        ensure_topics(gate.address, ["before"], partitions=1)
        producer = _producer(gate.address, acks="all", request_timeout_ms=5000)
        assert producer.send("before", b"1").get(10).offset == 0
        broker.stop()
        broker = start_broker_behind(gate, log_path=tmp_path / "broker.log")
        ensure_topics(gate.address, ["after"], partitions=1)  # the memory broker restarts empty
        # The same producer, through the same address, reaches the new broker once it reconnects.
        wait_for(lambda: _try_send(producer, "after"), 30)
        producer.close()
    finally:
        broker.stop()
        gate.stop()


def _try_send(producer: Any, topic: str) -> bool:
    try:
        producer.send(topic, b"x").get(5)
        return True
    except Exception:  # noqa: BLE001 - the old connection fails once, then the client reconnects
        return False


def test_topic_rotator_rotates_when_due_and_counts(gated: tuple[Any, Any]) -> None:
    from driftline.collector.embedded.broker_retention import TopicRotator

    broker, gate = gated
    topic, group = _topic(gate.address, 1), f"g-{uuid.uuid4().hex[:6]}"
    reader = GroupReader(gate.address, group, topic, 1)
    reader.start()
    rotator = TopicRotator(gate.address, group, [topic], gate=gate, stop_consumers=reader.stop,
                           start_consumers=reader.start, broker_pid=lambda: broker.proc.pid, max_rss_bytes=None,
                           min_records=100)
    producer = _producer(gate.address, acks="all")
    for i in range(50):
        producer.send(topic, str(i).encode())
    producer.flush()
    assert rotator.run_once() is None  # 50 records: not due
    for i in range(50, 150):
        producer.send(topic, str(i).encode())
    producer.flush()
    result = wait_for(lambda: (r := rotator.run_once()) is not None and r.rotated and r, 60)
    assert result.records_freed == 150 and rotator.rotations == 1 and rotator.records_freed == 150
    assert producer.send(topic, b"new").get(10).offset == 0  # the topic starts again
    wait_for(lambda: b"new" in reader.seen, 30)
    reader.stop()
    assert sorted(reader.seen[:150], key=int) == [str(i).encode() for i in range(150)]
    producer.close()
