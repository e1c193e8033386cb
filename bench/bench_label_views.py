"""The price of the sentinel views on labels and outcomes: the store's CPU per label with and without
``rollup_arrivals_1h``'s views, at 1 and 1,000 models.

The writer checks each insert's summary for rows stored without their table's views (chDB 26.9 once
skipped every view of an insert, silently); labels and outcomes needed a view that writes for every
insert, which ``rollup_arrivals_1h`` is (``collector/store/rollup_sql.py``, ``SENTINEL_VIEWS``).
Each run stores ``--events`` predictions, then a label for every other one, in inserts of
``--chunk`` labels through :class:`~driftline.collector.store.writer.ClickHouseWriter` into a fresh
embedded store, with the arrivals views or without them (dropped after ``migrate``), and reports
the store process's CPU per label (user + system from ``/proc``, background merges included), the
median of ``--repeats`` runs and the ratio with / without.

    python bench/bench_label_views.py [--events 20000] [--chunk 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rollup_sizing import _cpu_s, _events  # noqa: E402

from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store.client import connect  # noqa: E402
from driftline.collector.store.rollup_sql import SENTINEL_VIEWS  # noqa: E402
from driftline.collector.store.tables import migrate  # noqa: E402
from driftline.collector.store.writer import ClickHouseWriter  # noqa: E402
from driftline.sdk.ids import uuid7  # noqa: E402

ARRIVAL_VIEWS = tuple(SENTINEL_VIEWS[t] for t in ("labels", "outcomes"))


def run(models: int, events: int, chunk: int, sentinel: bool) -> float:
    """Store CPU µs per label stored."""
    preds = _events(events, 20, models)
    labels = [{"type": "label", "event_id": str(uuid7()), "model": p["model"], "model_version": "v1",
               "timestamp": p["timestamp"], "prediction_id": p["event_id"], "label": i % 3}
              for i, p in enumerate(preds[::2])]
    with tempfile.TemporaryDirectory() as tmp, start_chstore(Path(tmp) / "ch") as store:
        client = connect(str(store.url))
        migrate(client)
        if not sentinel:
            for mv in ARRIVAL_VIEWS:
                client.command(f"DROP VIEW driftline.{mv}")
        writer = ClickHouseWriter(client)
        for i in range(0, len(preds), 5000):
            writer.write(preds[i:i + 5000])
        before = _cpu_s(store.proc.pid)
        for i in range(0, len(labels), chunk):
            writer.write(labels[i:i + chunk])
        return (_cpu_s(store.proc.pid) - before) * 1e6 / len(labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="predictions per run (a label for every other)")
    ap.add_argument("--chunk", type=int, default=2_000, help="labels per insert")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"store CPU per label (µs), {args.events // 2} labels in inserts of {args.chunk}, "
          f"median of {args.repeats} runs alternating")
    print(f"{'models':>7} {'without arrivals':>17} {'with':>8} {'ratio':>7}")
    for models in (1, 1000):
        runs: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.repeats):
            for sentinel in ((False, True) if r % 2 == 0 else (True, False)):
                runs[sentinel].append(run(models, args.events, args.chunk, sentinel))
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        print(f"{models:>7} {off:>17.1f} {on:>8.1f} {on / off:>6.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
