"""Events per second from the SDK through the broker and the collector into ClickHouse.

Run: python bench/bench_pipeline.py [--events 200000]
Starts the embedded stack pieces (Tansu, chDB store, `driftline collector`), logs events with 20
numeric features through Monitor, and measures the time until the last row is stored. Baseline in
the same run: inserting the same rows straight into the store with clickhouse-connect (the storage
ceiling), so the ratio shows what Kafka, validation, scrubbing and the collector cost on top.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(events: int = 200_000, gate: bool = False) -> dict[str, float]:
    from driftline.collector.embedded.broker import free_port, start_broker
    from driftline.collector.topics import ensure_topics
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate
    from driftline.collector.store.writer import COLUMNS_OF, INSERT_SETTINGS, prediction_row
    from driftline.sdk.codec import dumps
    from driftline.sdk import Monitor, SdkSettings
    from driftline.sdk.ids import uuid7
    from driftline.sdk.contract import format_timestamp

    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    produce_gate = None
    if gate:  # as `driftline up` runs it: Tansu behind the produce gate (collector/embedded/broker_retention.py)
        from driftline.collector.embedded.produce_gate import start_gated_broker

        broker, produce_gate = start_gated_broker(log_path=tmp / "broker.log")
    else:
        broker = start_broker(log_path=tmp / "broker.log")
    store = start_chstore(tmp / "ch")
    client = connect(store.url)
    migrate(client)
    ensure_topics(broker.bootstrap, ["driftline.predictions", "driftline.labels", "driftline.outcomes",
                                     "driftline.deadletter"])
    features = {f"f{i}": i * 0.37 for i in range(20)}

    # Baseline: the same events as rows, inserted directly in batches of 5000.
    rows = [prediction_row({"event_id": uuid7(), "timestamp": format_timestamp(time.time_ns()), "model": "baseline",
                            "model_version": "1", "features": features, "prediction": 0.5, "latency_ms": 1.0})
            for _ in range(events)]
    t0 = time.perf_counter()
    for i in range(0, events, 5000):
        body = b"\n".join(dumps(r) for r in rows[i:i + 5000])
        client.raw_insert("driftline.predictions", column_names=list(COLUMNS_OF["predictions"]), insert_block=body,
                          settings=INSERT_SETTINGS, fmt="JSONEachRow")
    baseline_s = time.perf_counter() - t0

    env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap, "DRIFTLINE_CLICKHOUSE_URL": store.url,
           "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}"}
    log = open(tmp / "collector.log", "wb")
    collector = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector"], env=env, stdout=log, stderr=log)
    try:
        # Warm up: wait until the collector has joined its group and stores events.
        monitor = Monitor(model="warmup", settings=SdkSettings(kafka_bootstrap=broker.bootstrap))
        monitor.log(features, 0.5)
        monitor.flush(30)
        while client.query("SELECT count() FROM driftline.predictions WHERE model='warmup'").result_rows[0][0] < 1:
            if collector.poll() is not None:
                raise SystemExit(f"the collector exited; see {tmp}/collector.log")
            time.sleep(0.2)
        monitor.close(5)

        model = "bench"
        monitor = Monitor(model=model, version="1",
                          settings=SdkSettings(kafka_bootstrap=broker.bootstrap, queue_size=events + 10, batch_size=5000))
        pids = {"SDK (this process)" + (" and gate" if gate else ""): os.getpid(), "broker": broker.proc.pid, "collector": collector.pid,
                "store": store.proc.pid}
        cpu0 = {name: _cpu_s(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        for _ in range(events):
            monitor.log(features, 0.5, latency_ms=1.0)
        logged_s = time.perf_counter() - t0
        monitor.flush(300)
        produced_s = time.perf_counter() - t0
        deadline = time.monotonic() + 600
        while True:
            stored = client.query("SELECT count() FROM driftline.predictions WHERE model = 'bench'").result_rows[0][0]
            if stored >= events:
                break
            if time.monotonic() > deadline or collector.poll() is not None:
                raise SystemExit(f"collector stopped or stalled at {stored} of {events} events; see {tmp}/collector.log")
            time.sleep(0.1)
        total_s = time.perf_counter() - t0
        cpu = {name: _cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
        monitor.close(5)
    finally:
        collector.terminate()
        collector.wait(30)
        broker.stop()
        if produce_gate is not None:
            produce_gate.stop()
        store.stop()
    shutil.rmtree(tmp, ignore_errors=True)  # reached only when the run finished: a failed one keeps its logs
    e2e = events / total_s
    base = events / baseline_s
    print(f"SDK -> {'gate -> ' if gate else ''}Tansu -> collector -> ClickHouse, {events} events of 20 numeric features (2 cores)")
    print(f"  log() loop             {events / logged_s:10,.0f} events/s")
    print(f"  delivered to Kafka     {events / produced_s:10,.0f} events/s")
    print(f"  stored in ClickHouse   {e2e:10,.0f} events/s end to end   (target >= 20,000)")
    print(f"  baseline direct insert {base:10,.0f} rows/s (clickhouse-connect -> store, same rows)")
    print(f"  ratio end-to-end / direct insert: {e2e / base:.2f}")
    print(f"  CPU per event while it ran ({total_s:.1f} s wall, 2 cores = {2e6 * total_s / events:.0f} µs of CPU per event):")
    for name, seconds in cpu.items():
        print(f"    {name:20s} {1e6 * seconds / events:6.1f} µs")
    return {"e2e_events_per_s": e2e, "baseline_rows_per_s": base}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--gate", action="store_true", help="Tansu behind the produce gate, as `driftline up` runs it")
    parser.add_argument("--compare-gate", action="store_true", help="run without, then with the gate; print the ratio")
    a = parser.parse_args()
    if a.compare_gate:
        plain = main(a.events)["e2e_events_per_s"]
        gated = main(a.events, gate=True)["e2e_events_per_s"]
        print(f"end to end with the produce gate / without: {gated / plain:.2f}")
    else:
        main(a.events, a.gate)
