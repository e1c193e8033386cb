"""What frees the embedded broker's memory: Tansu's resident memory under each retention mechanism.

Run: python bench/bench_broker_retention.py [--records 1000000] [--only NAME ...]
For each mechanism, on a fresh Tansu (memory://): create a 4-partition topic, produce ``--records``
records of 200 bytes, read and commit them all with a consumer group, apply the mechanism, and print
the broker's VmRSS at each step. Mechanisms:

  none            nothing (the baseline: does consumption free anything?)
  retention       topic created with retention.ms=1000, retention.bytes=1000, segment.ms=1000,
                  cleanup.policy=delete; then IncrementalAlterConfigs retention.ms=100; 10 s wait
  delete-records  DeleteRecords below the committed offsets (driftline's trim_once)
  delete-topic    DeleteTopics + CreateTopics (frees, but loses what a live producer sends meanwhile)
  rotation        driftline's gated topic rotation (ProduceGate + rotate_topics), lossless
  restart         stop the broker and start a new one (what a "rotate the broker" would free)

Also prints the produce and consume rates with and without the gate in the path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

PAYLOAD = b"x" * 200
PARTITIONS = 4


def _rss(pid: int) -> float:
    from driftline.collector.embedded.broker_retention import rss_bytes

    return rss_bytes(pid) / 2**20


def produce(bootstrap: str, topic: str, n: int) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, acks=1)
    t0 = time.perf_counter()
    for i in range(n):
        p.send(topic, PAYLOAD, partition=i % PARTITIONS)
    p.flush()
    p.close()
    return n / (time.perf_counter() - t0)


def consume_commit(bootstrap: str, group: str, topic: str, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", max_poll_records=20_000, fetch_max_bytes=64 * 2**20,
                      max_partition_fetch_bytes=16 * 2**20)
    c.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    got, t0 = 0, time.perf_counter()
    deadline = time.monotonic() + 600
    while got < n and time.monotonic() < deadline:
        polled = c.poll(timeout_ms=500)
        got += sum(len(v) for v in polled.values())
        if polled:
            c.commit()
    c.commit()
    c.close()
    if got < n:
        raise SystemExit(f"read {got} of {n} records")
    return n / (time.perf_counter() - t0)


def run(name: str, records: int, tmp: Path) -> dict[str, Any]:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

    from driftline.collector.embedded.broker import start_broker
    from driftline.collector.topics import ensure_topics
    from driftline.collector.embedded.broker_retention import DeleteRecordsUnsupported, rotate_topics, trim_once
    from driftline.collector.embedded.produce_gate import start_gated_broker

    gate = None
    if name == "rotation":
        broker, gate = start_gated_broker(log_path=tmp / f"{name}.log")
        bootstrap = gate.address
    else:
        broker = start_broker(log_path=tmp / f"{name}.log")
        bootstrap = broker.bootstrap
    out: dict[str, Any] = {"mechanism": name}
    try:
        pid = broker.proc.pid
        out["empty"] = _rss(pid)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
        configs = ({"retention.ms": "1000", "retention.bytes": "1000", "segment.ms": "1000",
                    "cleanup.policy": "delete"} if name == "retention" else {})
        admin.create_topics([NewTopic("bench", PARTITIONS, 1, topic_configs=configs)])
        out["produce_per_s"] = produce(bootstrap, "bench", records)
        out["produced"] = _rss(pid)
        out["consume_per_s"] = consume_commit(bootstrap, "g", "bench", records)
        out["consumed"] = _rss(pid)
        note = ""
        t0 = time.perf_counter()
        if name == "retention":
            shown = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "bench")])
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "bench", configs={"retention.ms": "100"})],
                                incremental=True)
            time.sleep(10)
            note = f"DescribeConfigs answered {shown}"
        elif name == "delete-records":
            try:
                note = f"freed {trim_once(bootstrap, 'g', ['bench'])} records"
            except DeleteRecordsUnsupported as exc:
                note = f"unsupported: {exc}; broker alive: {broker.proc.poll() is None}"
        elif name == "delete-topic":
            admin.delete_topics(["bench"])
            time.sleep(1)
            admin.create_topics([NewTopic("bench", PARTITIONS, 1)])
        elif name == "rotation":
            assert gate is not None
            result = rotate_topics(bootstrap, "g", ["bench"], gate=gate, stop_consumers=lambda: None,
                                   start_consumers=lambda: None)
            note = f"{result}"
        elif name == "restart":
            broker.stop()
            t_stop = time.perf_counter() - t0
            broker = start_broker(log_path=tmp / f"{name}-2.log")
            pid = broker.proc.pid
            ensure_topics(broker.bootstrap, ["bench"], partitions=PARTITIONS)
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15_000)
            bootstrap = broker.bootstrap
            note = f"old broker took {t_stop:.1f} s to stop after SIGTERM; records and offsets gone"
        out["applied_s"] = time.perf_counter() - t0
        time.sleep(1)
        out["after"] = _rss(pid)
        out["note"] = note
        admin.close()
        # Reuse: does the memory come back for the next records, or does the process keep growing?
        produce(bootstrap, "bench", records)
        out["refilled"] = _rss(pid)
    finally:
        if gate is not None:
            gate.stop()
        broker.stop()
    return out


def main(records: int = 1_000_000, only: list[str] | None = None) -> list[dict[str, Any]]:
    import shutil
    import tempfile

    from driftline.collector.embedded.broker import broker_binary

    names = only or ["none", "retention", "delete-records", "delete-topic", "rotation", "restart"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-retention-"))
    print(f"Tansu {Path(broker_binary()).name}, memory://; {records:,} records of {len(PAYLOAD)} B, "
          f"{PARTITIONS} partitions; broker VmRSS in MiB")
    print(f"{'mechanism':15s} {'empty':>7s} {'produced':>9s} {'consumed':>9s} {'after':>7s} {'refilled':>9s}"
          f" {'freed':>7s} {'B/rec':>6s} {'apply s':>8s} {'produce/s':>10s} {'consume/s':>10s}")
    results = []
    for name in names:
        r = run(name, records, tmp)
        results.append(r)
        per = (r["produced"] - r["empty"]) * 2**20 / records
        print(f"{name:15s} {r['empty']:7.1f} {r['produced']:9.1f} {r['consumed']:9.1f} {r['after']:7.1f}"
              f" {r['refilled']:9.1f} {r['consumed'] - r['after']:7.1f} {per:6.0f} {r['applied_s']:8.2f}"
              f" {r['produce_per_s']:10,.0f} {r['consume_per_s']:10,.0f}", flush=True)
        if r["note"]:
            print(f"    {r['note']}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)  # reached only when every run finished: a failed one keeps its logs
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--only", nargs="*", default=None)
    a = parser.parse_args()
    sys.exit(0 if main(a.records, a.only) else 1)
