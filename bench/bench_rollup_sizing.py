"""The feature rollups' size and cost per feature value, by number of features and of models.

Issue 17 point 4: ``rollup_features_1h`` had 6.05 M rows for 6.5 M feature values at 1,000 models
and the store's cost per feature value rose above 200 features. This script stores the same number
of feature values (``--values``, default 1,000,000) in one hour of traffic, as 20, 200 and 1,000
numeric features per event for one model, and as 20 features for 1,000 models, through
:class:`~driftline.collector.store.writer.ClickHouseWriter` (the collector's insert, every rollup
MV running) into a fresh embedded store per run, then rolls the feature rollup's hour (counted: since 5
Dec it is rolled from the raw rows per closed hour, not filled by a view), and reports per feature value:

* the insert's wall time (µs), the time inside ``store()``, and the store process's CPU time
  (user + system, from ``/proc``: the figure that holds on a shared, busy machine);
* the feature rollup's rows (distinct keys: what merges leave) and bytes on disk (after
  ``OPTIMIZE … FINAL``), and the prediction log's bytes, for scale;
* every figure as a ratio to the 20-feature single-model run of the same invocation.

Inserts carry ``--chunk-values`` feature values each (default 250,000: 12,500 events of 20
features, 250 events of 1,000), so the fixed cost of the MVs per insert weighs the same in every
run. Run it on two trees (e.g. ``main``'s venv and a branch's) for before/after.

    python bench/bench_rollup_sizing.py [--values 1000000] [--chunk-values 250000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from driftline.collector.embedded.chstore import start_chstore
from driftline.collector.store.client import connect
from driftline.collector.store.tables import migrate
from driftline.collector.store.writer import ClickHouseWriter
from driftline.sdk.ids import uuid7

RUNS = ((20, 1), (200, 1), (1000, 1), (20, 1000))  # (features, models); the first is the baseline


def _events(n: int, features: int, models: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc)
    names = [f"f{j:04d}" for j in range(features)]
    # per feature a location and a scale, so features span different octaves as real ones do
    loc = [rng.uniform(-50, 500) for _ in names]
    scale = [rng.uniform(0.5, 80) for _ in names]
    out = []
    for i in range(n):
        ts = start + dt.timedelta(microseconds=int(3.6e9 * i / n))
        out.append({"type": "prediction", "event_id": str(uuid7()), "model": f"m{i % models:04d}",
                    "model_version": "v1", "variant": "primary", "request_id": f"r{i}",
                    "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "features": {k: round(rng.gauss(loc[j], scale[j]), 4) for j, k in enumerate(names)},
                    "prediction": rng.random(), "latency_ms": 3.0, "status": "ok"})
    return out


def run(values: int, chunk_values: int, features: int, models: int) -> dict[str, float]:
    n = values // features
    events = _events(n, features, models)
    per_chunk = max(1, chunk_values // features)
    with tempfile.TemporaryDirectory(prefix="driftline-rollup-") as tmp, start_chstore(Path(tmp) / "ch") as store:
        client = connect(store.url)
        migrate(client)
        writer = ClickHouseWriter(client)
        t_store = 0.0
        cpu0 = _cpu_s(store.pid)
        t0 = time.perf_counter()
        for i in range(0, n, per_chunk):
            chunk = writer.prepare(events[i:i + per_chunk])
            s0 = time.perf_counter()
            writer.store(chunk)
            t_store += time.perf_counter() - s0
        _roll(client)
        wall = time.perf_counter() - t0
        cpu = _cpu_s(store.pid) - cpu0
        sizes = {}
        for table in ("predictions", *_feature_tables(client)):
            _merge(client, table)
            sizes[table] = client.query(
                "SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = 'driftline' "
                f"AND table = '{table}' AND active").result_rows[0]
            if table != "predictions":  # rows once every merge is done: one per distinct sorting key
                key = client.query("SELECT sorting_key FROM system.tables WHERE database = 'driftline' "
                                   f"AND name = '{table}'").result_rows[0][0]
                sizes[table] = (client.query(
                    f"SELECT count() FROM (SELECT 1 FROM driftline.{table} GROUP BY {key})").result_rows[0][0],
                    sizes[table][1])
    fv = float(n * features)
    rollup_rows = sum(r for t, (r, _) in sizes.items() if t != "predictions")
    rollup_bytes = sum(b for t, (_, b) in sizes.items() if t != "predictions")
    return {"features": features, "models": models, "values": fv, "events": n,
            "us_wall": wall / fv * 1e6, "us_store": t_store / fv * 1e6, "us_cpu": cpu / fv * 1e6,
            "rollup_rows": rollup_rows, "rows_per_value": rollup_rows / fv,
            "rollup_b_per_value": rollup_bytes / fv, "log_b_per_value": sizes["predictions"][1] / fv}


def _roll(client) -> None:
    """The feature rollup rolled from the raw rows, as the collector does once the hour is closed
    (a tree from before rolls fills it by a view on every insert: nothing to do)."""
    try:
        from driftline.collector.store.feature_rolls import roll_pending
    except ImportError:
        return
    roll_pending(client, 0, 2**32)


def _merge(client, table: str) -> None:
    # OPTIMIZE … FINAL may do nothing while another merge holds the parts: repeat until one part
    # per partition is left, so rows and bytes are what merges leave
    for _ in range(20):
        client.command(f"OPTIMIZE TABLE driftline.{table} FINAL")
        parts, partitions = client.query(
            "SELECT count(), uniqExact(partition) FROM system.parts WHERE database = 'driftline' "
            f"AND table = '{table}' AND active").result_rows[0]
        if parts <= partitions:
            return
        time.sleep(0.5)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _feature_tables(client) -> list[str]:
    # the feature rollups of whichever tree runs this (names differ between releases)
    rows = client.query("SELECT name FROM system.tables WHERE database = 'driftline' AND "
                        "name LIKE 'rollup_feature%' AND engine LIKE '%MergeTree'").result_rows
    return sorted(r[0] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=1_000_000)
    ap.add_argument("--chunk-values", type=int, default=250_000)
    args = ap.parse_args()
    results = [run(args.values, args.chunk_values, f, m) for f, m in RUNS]
    base = results[0]
    print(f"{args.values:,} feature values per run, {args.chunk_values:,} per insert, one hour of traffic")
    print(f"{'features':>8} {'models':>6} {'events':>7} {'µs/value':>9} {'store µs':>9} {'CPU µs':>7} "
          f"{'rollup rows':>12} {'rows/value':>10} {'rollup B/v':>10} {'log B/v':>8}   "
          f"ratios to 20 features, 1 model: CPU µs, rows/value, rollup B/v")
    for r in results:
        print(f"{r['features']:>8} {r['models']:>6} {r['events']:>7,} {r['us_wall']:>9.2f} {r['us_store']:>9.2f} "
              f"{r['us_cpu']:>7.2f} {int(r['rollup_rows']):>12,} {r['rows_per_value']:>10.4f} "
              f"{r['rollup_b_per_value']:>10.3f} {r['log_b_per_value']:>8.2f}   "
              f"{r['us_cpu'] / base['us_cpu']:>6.2f} {r['rows_per_value'] / base['rows_per_value']:>6.1f} "
              f"{r['rollup_b_per_value'] / base['rollup_b_per_value']:>6.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (wall times are shared with it; CPU µs less so)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
