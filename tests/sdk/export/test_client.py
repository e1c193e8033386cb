"""One Client per process: Monitors are cheap handles on it; closing one never stops the others."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Iterator, Sequence

import pytest

import driftline.sdk.export.kafka as kafka_transport
from driftline.sdk import Client, ConfigError, InMemoryExporter, Monitor, Record, SdkSettings
from driftline.sdk.contract import Topics
from driftline.sdk.export import ExportResult, default_client
from tests.sdk.export.test_batch import exit_report


class FakeKafka(InMemoryExporter):
    """Stands in for KafkaExporter: counts how many transports (producers) the Clients build."""

    built: list[FakeKafka] = []

    def __init__(self, bootstrap_servers: str, **kwargs: Any) -> None:
        super().__init__()
        self.bootstrap_servers = bootstrap_servers
        FakeKafka.built.append(self)


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeKafka]]:
    FakeKafka.built = []
    monkeypatch.setattr(kafka_transport, "KafkaExporter", FakeKafka)
    yield FakeKafka


def own_settings(**kw: Any) -> SdkSettings:
    """Settings no other test uses, so each test gets its own default Client."""
    return SdkSettings(kafka_bootstrap=f"{uuid.uuid4().hex[:8]}.invalid:9092", **kw)


def exporter_threads() -> int:
    return sum(t.name == "driftline-exporter" for t in threading.enumerate())


def test_a_thousand_monitors_make_one_thread_and_one_producer(fake_kafka: type[FakeKafka]) -> None:
    settings = own_settings()
    threads_before = exporter_threads()
    monitors = [Monitor(model=f"m{i}", version=str(i % 7), settings=settings) for i in range(1_000)]
    for m in monitors:
        m.log({"x": 1}, 0.5)
    assert monitors[0].flush(10)
    assert len({id(m.client) for m in monitors}) == 1
    assert exporter_threads() - threads_before == 1
    [transport] = fake_kafka.built
    assert len(transport.records()) == 1_000
    assert monitors[0].stats().exported == 1_000  # the Client's counts, over every Monitor on it
    for m in monitors:
        m.close(1)


def test_monitors_on_one_client_keep_their_own_model_version_topics_and_denylist(fake_kafka: type[FakeKafka]) -> None:
    settings = own_settings()
    a = Monitor(model="a", version="1", settings=settings)
    b = Monitor(model="b", version="2", settings=replace(settings, topics=Topics.with_prefix("other"), denylist=("zip",)))
    assert a.client is b.client  # topics and denylist are per Monitor, not per Client
    a.log({"zip": "1234"}, 1)
    b.log({"zip": "1234"}, 2)
    assert a.flush(5)
    [transport] = fake_kafka.built
    by_model = {json.loads(r.value)["model"]: (r, json.loads(r.value)) for r in transport.records()}
    (ra, ea), (rb, eb) = by_model["a"], by_model["b"]
    assert (ra.topic, ra.key, ea["model_version"], ea["features"]) == (Topics().predictions, b"a", "1", {"zip": "1234"})
    assert (rb.topic, rb.key, eb["model_version"]) == (Topics.with_prefix("other").predictions, b"b", "2")
    assert eb["features"]["zip"] != "1234"
    a.close(1)
    b.close(1)


def test_closing_one_monitor_on_the_default_client_leaves_the_others_logging(fake_kafka: type[FakeKafka]) -> None:
    settings = own_settings()
    first, second = Monitor(model="first", settings=settings), Monitor(model="second", settings=settings)
    client = first.client
    first.log({"x": 1}, 1)
    assert first.close(5) is True  # flushed: its events are delivered
    assert not client.closed
    first.log({"x": 2}, 2)  # a closed handle counts its events as dropped...
    second.log({"x": 3}, 3)  # ...while the others keep logging
    assert second.flush(5)
    [transport] = fake_kafka.built
    assert sorted(e["model"] for e in transport.events()) == ["first", "second"]
    assert client.stats().dropped["shutdown"] == 1
    # The last open Monitor shuts the default Client down, as close() always did for one Monitor.
    assert second.close(5) is True
    assert client.closed
    second.log({"x": 4}, 4)
    stats = client.stats()
    assert stats.exported == 2 and stats.dropped["shutdown"] == 2 and stats.exported + stats.dropped_total == 4
    # A Monitor made afterwards gets a fresh default Client.
    third = Monitor(model="third", settings=settings)
    assert third.client is not client and not third.client.closed
    third.log({"x": 5}, 5)
    assert third.close(5) is True
    assert third.stats().exported == 1


def test_a_callers_client_is_flushed_by_close_and_stopped_only_by_its_owner() -> None:
    sink = InMemoryExporter()
    client = Client(SdkSettings(), exporter=sink)
    a, b = Monitor("churn", "1", client=client), Monitor("churn", "2", client=client)
    assert a.settings is client.settings  # no settings given: the Client's
    a.log({"x": 1}, 1)
    assert a.close(5) is True
    assert not client.closed
    b.log({"x": 2}, 2)
    assert client.shutdown(5) is True
    assert client.closed
    b.log({"x": 3}, 3)
    assert sorted(e["model_version"] for e in sink.events()) == ["1", "2"]
    assert client.stats().exported == 2 and client.stats().dropped["shutdown"] == 1


def test_a_monitor_with_an_exporter_owns_a_private_client() -> None:
    sink = InMemoryExporter()
    a, b = Monitor("a", exporter=sink), Monitor("b", exporter=sink)
    assert a.client is not b.client
    a.log({"x": 1}, 1)
    b.log({"x": 2}, 2)
    assert a.close(5) is True and a.client.closed and not b.client.closed
    assert a.stats().exported == 1 and b.flush(5) and b.stats().exported == 1
    b.close(5)


def test_encode_on_submit_encodes_on_the_logging_thread_and_counts_drops_as_the_worker_does() -> None:
    sink = InMemoryExporter()
    client = Client(SdkSettings(), exporter=sink, encode_on_submit=True)
    m = Monitor("churn", "1", client=client)
    logged_on = threading.get_ident()
    encoded_on: list[int] = []
    encode = m._encode

    def spy(item: Any) -> Record:
        encoded_on.append(threading.get_ident())
        return encode(item)

    m._encode = spy  # type: ignore[method-assign]
    m.log({"age": 41, "password": "hunter2"}, 0.5)
    m.log({"age": float("inf")}, 0.5)  # invalid: counted, never raised
    m.log({"x": object()}, 0.5)  # not a JSON value: invalid too (validation comes before encoding)
    assert encoded_on == [logged_on] * 3
    assert client.shutdown(5) is True
    (event,) = sink.events()
    assert event["features"] == {"age": 41, "password": "[REDACTED]"} and event["model_version"] == "1"
    stats = client.stats()
    assert stats.exported == 1 and stats.dropped["invalid_event"] == 2 and stats.dropped_total == 2


def test_client_and_exporter_together_fail_with_what_to_change() -> None:
    with pytest.raises(ConfigError, match="pass one"):
        Monitor("m", client=Client(SdkSettings(), exporter=InMemoryExporter()), exporter=InMemoryExporter())


def test_the_default_client_is_built_once_under_concurrent_first_use(fake_kafka: type[FakeKafka]) -> None:
    settings = own_settings()
    start = threading.Barrier(8)
    clients: list[Client] = []

    def make() -> None:
        start.wait(5)
        clients.append(default_client(settings))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(clients) == 8 and len({id(c) for c in clients}) == 1
    assert Monitor("m", settings=settings).client is clients[0]
    clients[0].shutdown(1)


def test_client_shutdown_honours_one_deadline_and_counts_what_it_could_not_deliver() -> None:
    class Never(InMemoryExporter):
        def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult:
            return ExportResult(retry=tuple(range(len(records))))

    client = Client(SdkSettings(flush_interval_s=0.01), exporter=Never())
    monitors = [Monitor(f"m{i}", client=client) for i in range(3)]
    for m in monitors:
        m.log({"x": 1}, 1)
    start = time.monotonic()
    assert client.shutdown(0.3) is False
    assert time.monotonic() - start < 0.3 + 0.4
    assert client.stats().dropped["shutdown"] == 3


FORK = r"""
import json, os
from driftline.sdk import Client, InMemoryExporter, Monitor, SdkSettings
sink = InMemoryExporter()
client = Client(SdkSettings(), exporter=sink)
a, b = Monitor("a", client=client), Monitor("b", client=client)
a.log({"x": 1}, 1)
assert client.flush(5)
pid = os.fork()
if pid == 0:
    b.log({"x": 2}, 2)
    ok = client.flush(5)
    print(json.dumps({"who": "child", "ok": ok, "xs": [e["features"]["x"] for e in sink.events()]}), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
a.log({"x": 3}, 3)
assert client.flush(5)
print(json.dumps({"who": "parent", "xs": [e["features"]["x"] for e in sink.events()]}), flush=True)
"""


def test_fork_gives_the_child_a_working_shared_client() -> None:
    out = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=60, check=True)
    lines = {json.loads(line)["who"]: json.loads(line) for line in out.stdout.splitlines()}
    assert lines["child"] == {"who": "child", "ok": True, "xs": [1, 2]}
    assert lines["parent"]["xs"] == [1, 3]


AT_EXIT_DEFAULT = r"""
import atexit, json, sys, time
marks = {}
atexit.register(lambda: print(json.dumps({"exit_s": time.monotonic() - marks["start"],
                                          "clients": len({id(m.client) for m in monitors}),
                                          "dropped": [m.stats().dropped["shutdown"] for m in monitors]}), flush=True))
from driftline.sdk import Monitor, SdkSettings
import driftline.sdk.export.batch as batch
batch._ATEXIT_TIMEOUT_S = 1.0
monitors = [Monitor(model=f"m{i}", settings=SdkSettings(kafka_bootstrap=sys.argv[1])) for i in range(3)]
for m in monitors:
    m.log({"x": 1}, 1)
atexit.register(lambda: marks.setdefault("start", time.monotonic()))  # runs first (LIFO)
"""


def test_monitors_on_the_default_client_are_flushed_at_exit_once() -> None:
    result = exit_report(AT_EXIT_DEFAULT)
    assert result["clients"] == 1
    assert result["exit_s"] < 1.0 + 0.8, result
    assert result["dropped"] == [3, 3, 3]  # one Client's counts: all three events, counted once
