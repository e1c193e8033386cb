"""The Kafka topics driftline reads, on any Kafka (a real cluster or the embedded Tansu).

``ensure_topics`` creates what is missing; ``BrokerBacklog`` counts what a consumer group has not
committed yet; ``partitions_of`` and ``true_end_offsets`` are the admin reads both need. The stream
path (``app.py``) and the embedded stack (``embedded/``: start-up, the stop's drain, rotation) use
them, so they live beside the stream path, not in the embedded broker's module.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Mapping

from driftline.sdk.contract import Topics

logger = logging.getLogger("driftline.collector")


def deadletter_configs(topics: Topics, retention_h: float) -> dict[str, dict[str, str]]:
    """Topic configs of the dead-letter topic: ``retention.ms`` of ``retention_h`` hours.

    Dead letters are the records the collector could not decode or validate, kept raw (never
    scrubbed: they may not even be events) so an operator can see what went wrong. Raw means they
    may hold personal data, so they expire after a short retention
    (``CollectorSettings.deadletter_retention_h``, 24 h by default), unlike the event topics.
    """
    return {topics.deadletter: {"retention.ms": str(int(retention_h * 3_600_000))}}


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 4, timeout_s: float = 20.0,
                  configs: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Create topics that do not exist yet (idempotent; works on Kafka and Tansu).

    ``configs``: topic configs by topic name (e.g. :func:`deadletter_configs`), set when the topic
    is created and set again on a topic that exists (a changed retention applies on restart).
    The embedded Tansu broker accepts and ignores them (it keeps records in memory until the
    topic is rotated or the broker restarts; see ``embedded/broker_retention.py``).
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    configs = configs or {}

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="driftline-admin",
                                     request_timeout_ms=5000)
            break
        except Exception:  # noqa: BLE001 - broker still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1, topic_configs=dict(configs.get(t, {})))
                                     for t in missing])
            except TopicAlreadyExistsError:
                pass
        _alter_existing(admin, {t: c for t, c in configs.items() if t in existing and c})
    finally:
        admin.close()


def _alter_existing(admin: Any, configs: Mapping[str, Mapping[str, str]]) -> None:
    if not configs:
        return
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=dict(c))
                             for t, c in configs.items()])
    except Exception as exc:  # noqa: BLE001 - a broker that refuses keeps the topic's old settings
        logger.warning("could not set %s on existing topic(s) %s (%s); set them with the broker's tools",
                       ", ".join(sorted({k for c in configs.values() for k in c})), ", ".join(sorted(configs)),
                       type(exc).__name__)


class BrokerBacklog:
    """How many records a consumer group has not committed yet, per partition.

    Reads the group's committed offsets with ``KafkaConsumer.committed`` (an API of every
    kafka-python release this project installs; ``KafkaAdminClient.list_consumer_group_offsets``
    is gone in 3.x) and each partition's true end (``true_end_offsets``). Errors are raised, never
    swallowed: a caller that cannot read the backlog must not assume it is empty.
    """

    def __init__(self, bootstrap: str, group_id: str, topics: list[str], *,
                 request_timeout_ms: int = 5000) -> None:
        from kafka import KafkaConsumer

        servers = bootstrap.split(",")
        self.topics = list(topics)
        common: dict[str, Any] = {"bootstrap_servers": servers, "client_id": "driftline-backlog",
                                  "enable_auto_commit": False, "request_timeout_ms": request_timeout_ms + 1000}
        if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:  # kafka-python 3.x; 2.x waits less anyway
            common["bootstrap_timeout_ms"] = request_timeout_ms
        self._ends = KafkaConsumer(group_id=None, **common)
        try:
            self._group = KafkaConsumer(group_id=group_id, **common)
        except BaseException:
            self._ends.close()
            raise

    def partitions(self, timeout_s: float = 5.0) -> list[Any]:
        return partitions_of(self._ends, self.topics, timeout_s)

    def behind(self) -> dict[Any, int]:
        """Records past the group's committed offset, per partition (0 when all are committed)."""
        parts = self.partitions()
        ends = true_end_offsets(self._ends, parts)
        out: dict[Any, int] = {}
        for tp in parts:
            committed = self._group.committed(tp)
            out[tp] = max(0, ends.get(tp, 0) - (committed or 0))
        return out

    def total(self) -> int:
        return sum(self.behind().values())

    def events_behind(self, timeout_s: float = 30.0) -> int:
        """Events (not records: an SDK record carries many) past the group's committed offsets.

        Reads the uncommitted records once; for the report of what a forced stop drops."""
        from driftline.sdk.contract import unpack

        parts = self.partitions()
        ends = true_end_offsets(self._ends, parts)
        events = 0
        deadline = time.monotonic() + timeout_s
        for tp in parts:
            start = self._group.committed(tp) or 0
            if ends.get(tp, 0) <= start:
                continue
            self._ends.assign([tp])
            self._ends.seek(tp, start)
            while self._ends.position(tp) < ends[tp] and time.monotonic() < deadline:
                for msg in self._ends.poll(timeout_ms=200).get(tp, []):
                    if msg.offset < ends[tp]:
                        events += len(unpack(msg.value, msg.headers))
        return events

    def close(self) -> None:
        for consumer in (self._ends, self._group):
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - closing a client to a dead broker
                pass

    def __enter__(self) -> BrokerBacklog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def partitions_of(consumer: Any, topics: Iterable[str], timeout_s: float = 10.0) -> list[Any]:
    """Every partition of ``topics`` (waits for their metadata up to ``timeout_s``)."""
    from kafka import TopicPartition

    topics = list(topics)
    deadline = time.monotonic() + timeout_s
    while True:
        known = {t: consumer.partitions_for_topic(t) for t in topics}
        if all(known.values()) or time.monotonic() >= deadline:
            return [TopicPartition(t, p) for t, ps in known.items() for p in sorted(ps or ())]
        consumer.topics()  # fetch metadata; partitions_for_topic only reads the cache
        time.sleep(0.1)


def true_end_offsets(consumer: Any, tps: list[Any], timeout_s: float = 5.0) -> dict[Any, int]:
    """One past the last record of each partition, read from the records themselves, all at once.

    Tansu answers ListOffsets with the base offset of the last record *batch* plus one, not the
    last record's offset plus one (measured: ten records in one batch report an end offset of 1).
    Seeking there on every partition and reading to the end gives the real end on Tansu and the
    same answer as ``end_offsets`` on Apache Kafka. Raises ``TimeoutError`` if it cannot.
    """
    reported = consumer.end_offsets(tps)
    live = [tp for tp in tps if reported[tp] > 0]
    out = {tp: reported[tp] for tp in tps}
    if not live:
        return out
    consumer.assign(live)
    for tp in live:
        consumer.seek(tp, reported[tp] - 1)
    waiting = set(live)
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=100)
        for tp in list(waiting):
            records = polled.get(tp)
            if records:
                out[tp] = max(out[tp], records[-1].offset + 1)
            elif consumer.position(tp) >= out[tp]:
                waiting.discard(tp)  # read up to the end and a fetch found nothing more
    if waiting:
        raise TimeoutError(f"could not read the end of {sorted(map(str, waiting))}")
    return out
