"""Benchmark of the embedded ClickHouse store (HTTP over chDB) against chDB in-process.

Run: ``python bench/bench_chstore.py [--rows 200000] [--batch 10000]``

Measures, on the same generated prediction-like rows (20 numeric features in a
``Map(LowCardinality(String), Float64)`` + model/version/variant/request id strings + timestamp):

* insert throughput (rows/s) with clickhouse-connect through the store's HTTP interface
  (compress=lz4 default and compress=False) vs clickhouse-connect's in-process chDB client on
  another data dir (the baseline: same client code, no HTTP, no second process);
* query latency (p50/p95 ms) of ``SELECT 1`` and of a simple aggregate, HTTP vs in-process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import clickhouse_connect

from driftline.collector.embedded.chstore import start_chstore

DDL = """CREATE TABLE IF NOT EXISTS {name} (
    event_id UUID, timestamp DateTime64(6, 'UTC'), model LowCardinality(String),
    model_version LowCardinality(String), variant LowCardinality(String), request_id String,
    features_num Map(LowCardinality(String), Float64)
) ENGINE = MergeTree ORDER BY (model, timestamp, event_id)"""
COLS = ["event_id", "timestamp", "model", "model_version", "variant", "request_id", "features_num"]
AGG = ("SELECT model, count(), avg(features_num['f0']), quantile(0.9)(features_num['f7']) "
       "FROM {name} GROUP BY model ORDER BY model")


def make_rows(n: int, seed: int = 7) -> list[list[object]]:
    rnd = random.Random(seed)
    t0 = datetime(2026, 11, 24, tzinfo=timezone.utc)
    names = [f"f{i}" for i in range(20)]
    return [[uuid.UUID(int=rnd.getrandbits(128)), t0 + timedelta(milliseconds=i),
             f"model{i % 5}", "v1", "primary" if i % 10 else "shadow", f"req-{i}",
             {k: rnd.random() for k in names}] for i in range(n)]


def insert_rate(client, table: str, rows: list[list[object]], batch: int) -> float:
    client.command(DDL.format(name=table))
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        client.insert(table, rows[i:i + batch], column_names=COLS)
    elapsed = time.perf_counter() - start
    assert client.command(f"SELECT count() FROM {table}") == len(rows)
    return len(rows) / elapsed


def latency_ms(client, sql: str, runs: int = 50) -> tuple[float, float]:
    client.query(sql)  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.query(sql)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    rows = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        local = clickhouse_connect.get_client(interface="chdb", path=str(Path(tmp) / "inproc"))
        base_rate = insert_rate(local, "bench_local", rows, args.batch)
        base_one = latency_ms(local, "SELECT 1")
        base_agg = latency_ms(local, AGG.format(name="bench_local"))
        with start_chstore(Path(tmp) / "store") as store:
            lz4 = clickhouse_connect.get_client(host=store.host, port=store.port)
            plain = clickhouse_connect.get_client(host=store.host, port=store.port, compress=False)
            lz4_rate = insert_rate(lz4, "bench_lz4", rows, args.batch)
            plain_rate = insert_rate(plain, "bench_plain", rows, args.batch)
            http_one = latency_ms(plain, "SELECT 1")
            http_agg = latency_ms(plain, AGG.format(name="bench_plain"))
            http_agg_lz4 = latency_ms(lz4, AGG.format(name="bench_lz4"))
    print(f"rows={args.rows} batch={args.batch} (20 Map features + 4 strings + uuid + DateTime64)")
    print(f"insert in-process chDB (clickhouse-connect chdb client): {base_rate:,.0f} rows/s  [baseline]")
    print(f"insert HTTP store, compress=lz4 (default):  {lz4_rate:,.0f} rows/s  ratio {lz4_rate / base_rate:.2f}")
    print(f"insert HTTP store, compress=False:          {plain_rate:,.0f} rows/s  ratio {plain_rate / base_rate:.2f}")
    print(f"SELECT 1        p50/p95 ms: in-process {base_one[0]:.2f}/{base_one[1]:.2f}  "
          f"HTTP {http_one[0]:.2f}/{http_one[1]:.2f}  ratio(p50) {http_one[0] / base_one[0]:.2f}")
    print(f"aggregate       p50/p95 ms: in-process {base_agg[0]:.2f}/{base_agg[1]:.2f}  "
          f"HTTP {http_agg[0]:.2f}/{http_agg[1]:.2f}  ratio(p50) {http_agg[0] / base_agg[0]:.2f}  "
          f"(HTTP+lz4 {http_agg_lz4[0]:.2f}/{http_agg_lz4[1]:.2f})")


if __name__ == "__main__":
    main()
