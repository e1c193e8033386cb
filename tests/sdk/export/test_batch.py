"""The batching exporter: bounded, never blocking, drops counted by reason, flush/shutdown timeouts, fork."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

from driftline.sdk import BatchExporter, ExportResult, InMemoryExporter, Record, SchemaError
from tests.conftest import wait_for


def encode(item: Any) -> Record:
    if item == "invalid":
        raise SchemaError("features.x", "expected number")
    if item == "unserialisable":
        raise TypeError("cannot encode")
    return Record("t", b"k", json.dumps(item).encode())


class BlockingExporter:
    """Holds every export until released: simulates a broker that does not answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[Record] = []

    def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult:
        if not self.release.wait(timeout_s):
            return ExportResult(retry=tuple(range(len(records))))
        self.records.extend(records)
        return ExportResult()

    def shutdown(self, timeout_s: float) -> None:
        return None


def test_delivers_in_batches_and_flushes() -> None:
    sink = InMemoryExporter()
    ex = BatchExporter(lambda: sink, encode, max_batch_size=100, schedule_delay_s=10)
    for i in range(1_000):
        assert ex.submit(i)
    assert ex.flush(5)
    assert [json.loads(r.value) for r in sink.records()] == list(range(1_000))
    assert ex.stats().exported == 1_000
    ex.shutdown(1)


def test_queue_full_drops_are_counted_exactly_and_submit_never_blocks() -> None:
    blocker = BlockingExporter()
    ex = BatchExporter(lambda: blocker, encode, max_queue_size=500, max_batch_size=50, schedule_delay_s=0.01,
                       export_timeout_s=0.05, max_backoff_s=0.05)
    accepted = sum(ex.submit(i) for i in range(5_000))
    dropped = ex.stats().dropped["queue_full"]
    assert accepted + dropped == 5_000
    assert dropped == 5_000 - 500  # in-flight items count toward the bound
    blocker.release.set()
    assert ex.flush(10)
    assert len(blocker.records) == accepted
    assert ex.stats().dropped["queue_full"] == dropped
    ex.shutdown(1)


def test_transient_failures_are_retried_without_loss() -> None:
    sink = InMemoryExporter()
    sink.fail_next(3)
    ex = BatchExporter(lambda: sink, encode, max_batch_size=10, schedule_delay_s=0.01, max_backoff_s=0.02)
    for i in range(25):
        ex.submit(i)
    assert ex.flush(10)
    assert sorted(json.loads(r.value) for r in sink.records()) == list(range(25))
    assert ex.stats().dropped_total == 0
    ex.shutdown(1)


def test_invalid_and_unserialisable_items_are_counted_not_raised() -> None:
    sink = InMemoryExporter()
    seen: list[Exception] = []
    ex = BatchExporter(lambda: sink, encode, schedule_delay_s=0.01, on_invalid=seen.append)
    for item in (1, "invalid", 2, "unserialisable", 3):
        ex.submit(item)
    assert ex.flush(5)
    stats = ex.stats()
    assert stats.dropped["invalid_event"] == 1 and stats.dropped["serialize_error"] == 1
    assert [json.loads(r.value) for r in sink.records()] == [1, 2, 3]
    assert [type(e).__name__ for e in seen] == ["SchemaError", "TypeError"]
    ex.shutdown(1)


def test_flush_and_shutdown_honour_their_timeouts_and_count_shutdown_drops() -> None:
    blocker = BlockingExporter()
    ex = BatchExporter(lambda: blocker, encode, max_batch_size=10, schedule_delay_s=0.01, export_timeout_s=0.05,
                       max_backoff_s=0.05)
    for i in range(100):
        ex.submit(i)
    start = time.monotonic()
    assert ex.flush(0.3) is False
    assert time.monotonic() - start < 2.0  # generous: proves it returned, not how fast
    assert ex.shutdown(0.3) is False
    stats = ex.stats()
    assert stats.dropped["shutdown"] + len(blocker.records) == 100
    assert stats.dropped["shutdown"] > 0
    assert ex.submit(1) is False
    assert ex.stats().dropped["shutdown"] == stats.dropped["shutdown"] + 1


class SlowExporter(BlockingExporter):
    """Takes all the time it is given: each export waits for its whole timeout unless released,
    and shutdown sleeps for its whole timeout (a transport with a slow close)."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown_timeouts: list[float] = []

    def shutdown(self, timeout_s: float) -> None:
        self.shutdown_timeouts.append(timeout_s)
        time.sleep(timeout_s)


def test_shutdown_shares_one_deadline_between_flush_transport_and_worker() -> None:
    slow = SlowExporter()
    ex = BatchExporter(lambda: slow, encode, max_batch_size=10, schedule_delay_s=0.01, export_timeout_s=30)
    for i in range(100):
        ex.submit(i)
    start = time.monotonic()
    assert ex.shutdown(0.5) is False
    elapsed = time.monotonic() - start
    # Each step with its own timeout took 0.5 (flush) + 0.5 (join) + 0.5 (transport) = 1.5 s.
    assert elapsed < 0.5 + 0.4, f"shutdown(0.5) took {elapsed:.2f} s"
    assert slow.shutdown_timeouts[0] < 0.1  # the flush used the whole budget: the transport got the rest
    stats = ex.stats()
    assert stats.queued == stats.pending_retry == 0
    assert stats.exported == 0 and stats.dropped["shutdown"] == 100  # the batch inside export too
    # That batch is delivered after all: it moves from `shutdown` to `exported`, never counted twice.
    slow.release.set()
    wait_for(lambda: ex.stats().exported == 10, timeout_s=10, interval_s=0.01)
    assert ex.stats().dropped["shutdown"] == 90
    assert [json.loads(r.value) for r in slow.records] == list(range(10))


def test_invalid_items_in_the_batch_shutdown_abandoned_are_counted_once() -> None:
    slow = SlowExporter()
    taken, counted = threading.Event(), threading.Event()

    def encode_slowly(item: Any) -> Record:
        if item == "first":
            taken.set()
            counted.wait(5)  # shutdown() counts while this batch is still being encoded
        return encode(item)

    slow.release.set()  # the transport delivers at once; the batch is late only because of encoding
    ex = BatchExporter(lambda: slow, encode_slowly, max_batch_size=10, schedule_delay_s=0.01)
    ex.submit(0)
    assert ex.flush(5)
    for item in ("first", 1, "invalid", 2):
        ex.submit(item)
    assert taken.wait(5)
    assert ex.shutdown(0) is False
    assert ex.stats().dropped["shutdown"] == 4
    counted.set()
    wait_for(lambda: ex.stats().exported == 1 + 3, timeout_s=10, interval_s=0.01)
    stats = ex.stats()
    assert stats.dropped["invalid_event"] == 1 and stats.dropped["shutdown"] == 0, stats


CHILD = r"""
import json, os, sys
from driftline.sdk import Monitor, InMemoryExporter
sink = InMemoryExporter()
m = Monitor(model="fork", exporter=sink)
m.log({"x": 1}, 1)
assert m.flush(5)
pid = os.fork()
if pid == 0:
    m.log({"x": 2}, 2)
    ok = m.flush(5)
    child = [e["features"]["x"] for e in sink.events()]
    print(json.dumps({"who": "child", "ok": ok, "xs": child}), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
m.log({"x": 3}, 3)
assert m.flush(5)
print(json.dumps({"who": "parent", "xs": [e["features"]["x"] for e in sink.events()]}), flush=True)
"""


def test_fork_gives_the_child_a_working_exporter() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    lines = {json.loads(line)["who"]: json.loads(line) for line in out.stdout.splitlines()}
    assert lines["child"]["ok"] is True
    assert lines["child"]["xs"] == [1, 2]  # inherited sink memory plus the child's own event
    assert lines["parent"]["xs"] == [1, 3]


AT_EXIT = r"""
import sys
from driftline.sdk import Monitor, SdkSettings
m = Monitor(model="atexit", settings=SdkSettings(kafka_bootstrap=sys.argv[1], flush_interval_s=60))
for i in range(50):
    m.log({"i": i}, i)
"""


@pytest.mark.xfail((3, 12) <= sys.version_info[:3] < (3, 12, 3), strict=True, reason=(
    "CPython 3.12.0-3.12.2 refuse new threads from every exit hook (gh-113964, fixed in 3.12.3), and "
    "the Kafka producer starts one: events still queued at exit are counted as dropped"))
def test_events_are_flushed_at_interpreter_exit(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer

    from driftline.sdk.contract import Topics

    subprocess.run([sys.executable, "-c", AT_EXIT, kafka_bootstrap], check=True, timeout=60,
                   env={**os.environ, "DRIFTLINE_TOPIC_PREFIX": ""})
    consumer = KafkaConsumer(Topics().predictions, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, group_id=None)
    from driftline.sdk.contract import unpack

    seen = [json.loads(v) for m in consumer for v in unpack(m.value, m.headers)]
    consumer.close()
    assert sorted(e["features"]["i"] for e in seen if e["model"] == "atexit") == list(range(50))


AT_EXIT_SHARED = r"""
import atexit, json, sys, time
marks = {}
atexit.register(lambda: print(json.dumps({"exit_s": time.monotonic() - marks["start"],
                                          "dropped": [m.stats().dropped["shutdown"] for m in monitors]}), flush=True))
from driftline.sdk import Client, Monitor, SdkSettings
import driftline.sdk.export.batch as batch
batch._ATEXIT_TIMEOUT_S = 1.0
# Three Clients (one per Monitor): Monitors on the default Client share one, see test_client.py.
monitors = [Monitor(model=f"m{i}", client=Client(SdkSettings(kafka_bootstrap=sys.argv[1]))) for i in range(3)]
for m in monitors:
    m.log({"x": 1}, 1)
atexit.register(lambda: marks.setdefault("start", time.monotonic()))  # runs first (LIFO)
"""


def exit_report(script: str) -> dict[str, Any]:
    """Run ``script`` against a broker address nothing listens on (every flush at exit times out)
    and return the JSON it prints last, from its exit hooks."""
    from driftline.collector.embedded.broker import free_port

    nowhere = f"127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-c", script, nowhere], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_exit_flushes_every_client_within_one_bound() -> None:
    result = exit_report(AT_EXIT_SHARED)
    # One bound for all three; each with its own (plus the old 1 s worker join) took about 6 s.
    assert result["exit_s"] < 1.0 + 0.8, result
    assert result["dropped"] == [1, 1, 1]  # counted, not silently lost
