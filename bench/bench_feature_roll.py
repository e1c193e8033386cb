"""The feature rollup's roll: its cost, its rows and the dashboard histograms' accuracy, per design.

Issue 17 point 4. ``rollup_features_1h`` is rolled from the raw rows once an hour is closed
(``collector/store/feature_rolls.py``). Until 5 Dec a roll wrote one row per occupied **fine bin**
(a float's sign, exponent and top 4 mantissa bits: 16 per doubling): with a fleet's few values per
model, feature and hour, about one row per value. Since then it merges the fine bins into
**equi-depth bins** chosen per (model, version, feature, hour) (``rollup_sql.FEATURES_SELECT``: at
most 32, at least 16 values each). This script rolls the same hour both ways, in the same run:

* the store process's CPU time (``/proc``) for the roll and the merges it leaves, per event;
* the rollup's rows per event (after ``OPTIMIZE … FINAL``);
* the dashboard's feature histogram over each feature's exact deciles (the bins a reference taken
  from the log gets), read through ``dashboard.queries.numeric_hist`` from the rollup and compared
  with the exact counts from the raw rows: the share of values put in the wrong bin (L1 / 2),
  median and worst over the features (at 1,000 models, over the first ``--sample`` models).

Events: ``--events`` (default 100,000) in one hour, ``--features`` (default 20) numeric features of
different locations and scales (``bench_rollup_sizing._events``: continuous, rounded to 4 decimals),
for each of ``--models`` (default 1 and 1,000 models), a fresh embedded store per run, ``--repeats``
runs each, the two designs in alternating order; the fine-bin roll is the baseline. Histograms are
compared over the first ``--sample-features`` features (all by default) of the first ``--sample`` models.

    python bench/bench_feature_roll.py [--events 100000] [--repeats 2]
    python bench/bench_feature_roll.py --features 1000 --models 1 --events 10000 --sample-features 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rollup_sizing import _cpu_s, _events, _merge  # noqa: E402

from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store import rollup_sql as R  # noqa: E402
from driftline.collector.store.client import connect  # noqa: E402
from driftline.collector.store.tables import migrate  # noqa: E402
from driftline.collector.store.writer import ClickHouseWriter  # noqa: E402
from driftline.dashboard import queries  # noqa: E402
from driftline.dashboard.data import run as run_sql  # noqa: E402
from driftline.dashboard.view import View  # noqa: E402

HOUR = dt.datetime(2026, 11, 2, 10, tzinfo=dt.timezone.utc)  # bench_rollup_sizing._events' hour
# The baseline: the roll until 5 Dec, one row per occupied fine bin (numeric values only here).
FINE_SELECT = f"""
SELECT model, model_version, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, f.1 AS feature,
       toUInt8(0) AS kind, bitShiftRight(reinterpretAsUInt64(f.2), 48) AS bin, '' AS category, count() AS n,
       sum(f.2) AS s, min(f.2) AS lo, max(f.2) AS hi
FROM {R.DB}.predictions ARRAY JOIN arrayZip(mapKeys(features_num), mapValues(features_num)) AS f
WHERE {R.SERVED} AND {{where}}
GROUP BY model, model_version, hour, feature, kind, bin, category"""
DESIGNS = {"fine bins (until 5 Dec)": FINE_SELECT,
           "equi-depth": R.FEATURES_SELECT.format(src=f"{R.DB}.predictions", where="{where}")}
COLS = "model, model_version, hour, feature, kind, bin, category, n, s, lo, hi, gen"


def _misplaced(url: str, model: str, feature: str) -> float:
    v = View(model, HOUR, HOUR + dt.timedelta(hours=1))
    edges = run_sql(url, "SELECT quantilesExact(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)(features_num[{f:String}]) "
                         "FROM driftline.predictions WHERE model = {m:String}", {"f": feature, "m": model}).rows[0][0]
    fast, exact = queries.numeric_hist(v, feature, list(edges)), queries.numeric_hist(v, feature, list(edges), raw=True)
    assert "rollup_features_1h" in fast.sql
    a = {int(r[0]): r[1] for r in run_sql(url, fast.sql, dict(fast.params)).rows}
    b = {int(r[0]): r[1] for r in run_sql(url, exact.sql, dict(exact.params)).rows}
    total = sum(b.values())
    return sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)) / 2 / total


def one(events: list[dict], models: int, sample: int, sample_features: int | None = None,
        reverse: bool = False) -> dict[str, tuple[float, float, list[float]]]:
    out = {}
    with tempfile.TemporaryDirectory(prefix="driftline-roll-") as tmp, start_chstore(Path(tmp) / "ch") as store:
        client = connect(store.url)
        migrate(client)
        writer = ClickHouseWriter(client)
        for i in range(0, len(events), 5000):
            writer.store(writer.prepare(events[i:i + 5000]))
        _merge(client, "predictions")
        names = sorted(events[0]["features"])[:sample_features]
        order = list(DESIGNS.items())[::-1] if reverse else list(DESIGNS.items())
        for gen, (name, select) in enumerate(order, start=1):
            client.command(f"TRUNCATE TABLE {R.DB}.rollup_features_1h")
            client.command(f"TRUNCATE TABLE {R.ROLLS}")
            cpu0 = _cpu_s(store.pid)
            client.command(f"INSERT INTO {R.DB}.rollup_features_1h ({COLS}) SELECT *, toUInt64({gen}) FROM "
                           f"({select.format(where='1')})")
            client.command(R.roll_record("1", gen, "0"))  # every model binned (no hour read raw)
            _merge(client, "rollup_features_1h")
            cpu = (_cpu_s(store.pid) - cpu0) / len(events) * 1e6
            rows = client.query(f"SELECT count() FROM {R.DB}.rollup_features_1h").result_rows[0][0] / len(events)
            errs = [_misplaced(store.url, f"m{m:04d}", f) for m in range(min(models, sample)) for f in names]
            out[name] = (cpu, rows, errs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sample", type=int, default=5, help="models whose histograms are compared (1,000 models)")
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--models", default="1,1000", help="model counts to run, comma-separated")
    ap.add_argument("--sample-features", type=int, default=None, help="features whose histograms are compared")
    a = ap.parse_args(argv)
    print(f"{a.features} numeric features, {a.events:,} events in one hour, {a.repeats} runs (medians)\n")
    print("| models | design | roll + merges, store CPU µs/event | ratio to fine bins | rollup rows/event | "
          "values misplaced by the histogram, median / worst feature |")
    print("|---|---|---|---|---|---|")
    for models in (int(m) for m in a.models.split(",")):
        events = _events(a.events, a.features, models)
        runs = [one(events, models, a.sample, a.sample_features, reverse=r % 2 == 1) for r in range(a.repeats)]
        base = statistics.median(r[next(iter(DESIGNS))][0] for r in runs)
        for name in DESIGNS:
            cpu = statistics.median(r[name][0] for r in runs)
            rows = statistics.median(r[name][1] for r in runs)
            errs = runs[0][name][2]
            print(f"| {models:,} | {name} | {cpu:.2f} ({', '.join(f'{r[name][0]:.2f}' for r in runs)}) | "
                  f"{cpu / base:.2f}× | {rows:.3f} | {statistics.median(errs):.2%} / {max(errs):.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
