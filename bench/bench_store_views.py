"""The store's CPU per event by rollup view, at 1 and 1,000 models (issue 17's store target).

Each run writes ``--events`` events of 20 numeric features (one hour of traffic, spread
round-robin over the models) through :class:`~driftline.collector.store.writer.ClickHouseWriter`
(the collector's insert) in inserts of ``--chunk`` events into a fresh embedded store, with every
rollup view or without the feature rollup's views (those whose target is ``rollup_features_1h``,
dropped after ``migrate``; since 5 Dec it has none: its hour is rolled from the raw rows after the
inserts, counted, or not rolled for "without"), and reports the store process's CPU time per event (user + system,
from ``/proc``: it holds on a shared, busy machine better than wall time; it includes the
background merges that run meanwhile), the median of ``--repeats`` runs, and the ratio of 1,000
models to 1 model; then the same with the CPU of merging the feature rollup into one part
(``OPTIMIZE … FINAL``: through ``driftline up`` background merges run all along, and a layout
whose merges cost more shows there), and the rollup's rows and bytes on disk once merged. Run it on two trees (``main``'s venv and a branch's) for before/after.

    python bench/bench_store_views.py [--events 20000] [--chunk 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rollup_sizing import _cpu_s, _events, _merge, _roll  # noqa: E402

from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store.client import connect  # noqa: E402
from driftline.collector.store.rollup_sql import VIEWS  # noqa: E402
from driftline.collector.store.tables import migrate  # noqa: E402
from driftline.collector.store.writer import ClickHouseWriter  # noqa: E402

FEATURE_TABLE = "rollup_features_1h"
FEATURE_VIEWS = tuple(mv for mv, (target, _) in VIEWS.items() if target == FEATURE_TABLE)


def run(events: list[dict], chunk: int, features_view: bool, warm: list[dict]) -> tuple[float, float, int, int]:
    """Store CPU µs per event (inserts; inserts and merging the feature rollup into one part), and
    the feature rollup's rows and bytes once merged."""
    with tempfile.TemporaryDirectory(prefix="driftline-views-") as tmp, start_chstore(Path(tmp) / "ch") as store:
        client = connect(store.url)
        migrate(client)
        if not features_view:
            for mv in FEATURE_VIEWS:
                client.command(f"DROP VIEW driftline.{mv}")
        writer = ClickHouseWriter(client)
        for i in range(0, len(warm), chunk):  # earlier traffic of the same hour, merged before
            writer.store(writer.prepare(warm[i:i + chunk]))
        if warm:
            _merge(client, FEATURE_TABLE)
        chunks = [writer.prepare(events[i:i + chunk]) for i in range(0, len(events), chunk)]
        cpu0 = _cpu_s(store.pid)
        for c in chunks:
            writer.store(c)
        if features_view:  # rolled once the hour is closed (a tree before 5 Dec: by its views, nothing here)
            _roll(client)
        cpu = _cpu_s(store.pid) - cpu0
        _merge(client, FEATURE_TABLE)
        merged = _cpu_s(store.pid) - cpu0
        rows, size = client.query("SELECT sum(rows), sum(bytes_on_disk) FROM system.parts WHERE "
                                  f"database = 'driftline' AND table = '{FEATURE_TABLE}' AND active").result_rows[0]
    return cpu / len(events) * 1e6, merged / len(events) * 1e6, int(rows), int(size)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm-per-model", type=int, default=0,
                    help="events per model stored (and merged) before the measured ones, in the same hour "
                         "(bench_fleet.py's warm-up: 70)")
    args = ap.parse_args()
    print(f"{args.events:,} events of 20 features after {args.warm_per_model} per model, inserts of {args.chunk:,}, "
          f"median of {args.repeats} runs; "
          f"load average at the start: {os.getloadavg()[0]:.1f}")
    print(f"{'views':<28} {'1 model µs/event':>17} {'1,000 models':>13} {'ratio':>6}   {'with the merge: 1':>17} "
          f"{'1,000':>6} {'ratio':>6}   {'rollup rows (1 / 1,000)':>24} {'rollup bytes (1 / 1,000)':>26}")
    data = {m: _events(args.events + m * args.warm_per_model, 20, m) for m in (1, 1000)}
    warm = {m: data[m][:m * args.warm_per_model] for m in data}
    data = {m: data[m][m * args.warm_per_model:] for m in data}
    for label, view in (("all", True), ("without the features view", False)):
        out = {}
        for m in (1, 1000):
            runs = [run(data[m], args.chunk, view, warm[m]) for _ in range(args.repeats)]
            out[m] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                      runs[-1][2], runs[-1][3])
        print(f"{label:<28} {out[1][0]:>17.1f} {out[1000][0]:>13.1f} {out[1000][0] / out[1][0]:>5.2f}×   "
              f"{out[1][1]:>17.1f} {out[1000][1]:>6.1f} {out[1000][1] / out[1][1]:>5.2f}×   "
              f"{out[1][2]:>11,} / {out[1000][2]:>10,} {out[1][3]:>12,} / {out[1000][3]:>11,}", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
