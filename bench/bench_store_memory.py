"""The embedded store's memory under the collector's storage and detector path, without `up`.

Run: python bench/bench_store_memory.py [--minutes 8] [--chunk 3000] [--mode pipeline|inserts]
     [--parts-lifetime-s N]

Issue 12 point 6: in a 5M-event soak through `driftline up` the store's RSS rose from 263 to
~670 MiB (bench/README.md). This script takes `up` away to find which part of the traffic does
it. It starts the store alone (``start_chstore``), creates every table and view, and then feeds:

* ``pipeline``: the real ``Pipeline`` with the detector stage (state saves, ``drift_metrics``,
  every rollup view), in chunks of ``--chunk`` events (the soak's chunks at 6,000 events/s are
  ~3,000: the collector's 0.5 s batch timeout);
* ``inserts``: ``ClickHouseWriter`` alone, in chunks of ``--chunk`` events.

Every 40 chunks it prints the store's RSS, its outdated and active parts and its threads. The
baseline is the run's own first minute: a flat line is the outcome to look for.
``--parts-lifetime-s`` sets ``old_parts_lifetime`` on every table first (ClickHouse's default
is 480 s). Environment variables such as ``MALLOC_ARENA_MAX`` reach the store process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--chunk", type=int, default=3000)
    parser.add_argument("--mode", choices=("pipeline", "inserts"), default="pipeline")
    parser.add_argument("--parts-lifetime-s", type=int)
    args = parser.parse_args()

    from bench_detect_stage import _events, _records
    from prometheus_client import CollectorRegistry

    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store import connect, migrate
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.stage import build_stage

    tmp = Path(tempfile.mkdtemp(prefix="bench-store-mem-"))
    store = start_chstore(tmp / "ch", port=0)
    try:
        client = connect(store.url)
        migrate(client)
        if args.parts_lifetime_s is not None:
            tables = client.query("SELECT name FROM system.tables WHERE database = 'driftline' "
                                  "AND engine LIKE '%MergeTree%'").result_rows
            for (table,) in tables:
                client.command(f"ALTER TABLE driftline.`{table}` MODIFY SETTING "
                               f"old_parts_lifetime = {args.parts_lifetime_s}")
        registry = CollectorRegistry()
        observers = [build_stage(DetectorsConfig(), client, registry=registry)] if args.mode == "pipeline" else []
        pipe = Pipeline(ClickHouseWriter(client), CollectorMetrics(registry), send_dead_letters=lambda d: None,
                        observers=observers, max_batch_events=args.chunk)
        print(f"store pid {store.pid}, mode {args.mode}, chunks of {args.chunk} events, "
              f"old_parts_lifetime {args.parts_lifetime_s or 'default'}, MALLOC_ARENA_MAX "
              f"{os.environ.get('MALLOC_ARENA_MAX', 'unset')}", flush=True)
        t0, chunks, events, k = time.monotonic(), 0, 0, 0
        while time.monotonic() - t0 < args.minutes * 60:
            evs = _events(f"m{k % 3}", 30_000)
            k += 1
            for batch in _records(evs, args.chunk):
                pipe.process(batch)
                chunks += 1
                events += sum(r.value.count(b"\n") + 1 for r in batch if r.value)
                if chunks % 40 == 0:
                    outdated, active = client.query(
                        "SELECT countIf(active = 0), countIf(active) FROM system.parts "
                        "WHERE database = 'driftline'").result_rows[0]
                    threads = len(os.listdir(f"/proc/{store.pid}/task"))
                    print(f"{time.monotonic() - t0:6.0f} s  {events:>9,} events  store RSS {rss_mib(store.pid):5d} MiB"
                          f"  parts outdated {outdated:5d} active {active:4d}  threads {threads}", flush=True)
    finally:
        store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
