"""Dashboard benchmark: page render time (AppTest) and every panel query, over 10M predictions.

    python bench/bench_dashboard.py [--predictions 10000000]

Seeds the embedded store inside ClickHouse (``tests/dashboard/seed.py``), then times each page's
full script run with Streamlit's AppTest (cold cache, then warm) and each panel query uncached,
for the last 24 hours and for the whole 7 days. Baselines measured in the same run: a plain
``SELECT count()`` of the model's rows, and the same panels on a 1M-prediction model.
Targets (issue 7): every page < 2 s, every panel query < 300 ms.

Panels read the per-minute rollups that materialized views keep (``collector/store/rollups.py``);
``--raw`` times the raw-table SQL of the same panels for comparison. The insert cost of those
views is measured first on a separate fresh store: rows/s and the store process's CPU µs per row
for 200k predictions (a third of them shadows), the same without shadows, and 100k labels of
those predictions, inserted as the collector does (JSONEachRow, ``--insert-batch`` rows per
insert, 10k by default) without and with the views; ``--per-view`` adds each view (or cascade)
alone against a baseline run just before it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the data seeding lives with the tests (tests/dashboard/seed.py)
NO_SHADOWS = "predictions (no shadows)"
PAGES = ("overview", "model", "performance", "shadow", "alerts", "sql")


def panel_queries(v: Any, raw: bool = False) -> list[Any]:
    from driftline.dashboard import detector_queries as dq
    from driftline.dashboard import queries as q

    feature = "mean radius"
    edges = [8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 25.0]
    r = {"raw": raw}
    return [q.catalog(**r), q.segments(v), q.features(v), q.overview_models(v.start, v.end, **r),
            q.overview_traffic(v.start, v.end, v.bucket_s, **r), dq.overview_health(v.start, v.end),
            dq.overview_verdicts(v.start, v.end), dq.overview_budget_use(v.end),
            q.open_alerts(), q.volume(v, **r), q.latency(v, **r), q.prediction_labels(v, **r),
            q.confidence(v, **r), dq.drift_statistics(v), dq.drift_heatmap(v, "data_drift", "psi"),
            dq.feature_tests(v, feature), q.reference_profile(v.model, ""),
            q.numeric_edges(v, feature, **r), q.numeric_hist(v, feature, edges, **r),
            q.categorical_hist(v, "referrer", **r), q.performance(v, **r), q.confusion(v, **r),
            dq.detector_verdicts(v, ("performance", "prediction_drift"), ("concept.",)),
            dq.detector_series_names(v, ("performance", "prediction_drift"), ("concept.",)),
            dq.detector_statistic(v, "performance", "model", "accuracy"),
            dq.latest_verdict_evidence(v, ("data_drift", "prediction_drift"), ("multivariate.",)),
            dq.detector_series(v, ("performance", "prediction_drift"), ("concept.",)),
            q.shadow_agreement(v, **r), q.shadow_confusion(v, **r), q.variant_metrics(v, **r),
            q.variant_accuracy(v, **r), q.outcome_stats(v, **r),
            q.alert_history(v.start, v.end, v.model)]


def insert_cost(n_predictions: int = 200_000, batch: int = 10_000, per_view: bool = False) -> None:
    """Rows/s of collector-style inserts into a fresh store, without then with the rollup MVs
    (and, with ``per_view``, with each MV alone: its tables exist, the other MVs are dropped)."""
    from driftline.collector.store import rollups
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate
    from tests.dashboard.seed import SeedSpec, seed_labels_outcomes, seed_predictions

    end = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="bench-dash-ins-") as tmp, start_chstore(Path(tmp), port=0) as store:
        c = connect(store.url)
        migrate(c)
        # Source rows generated once into a scratch model; re-sent as JSONEachRow bodies.
        spec = SeedSpec(model="src", n_predictions=int(n_predictions / 1.5), end=end)
        seed_predictions(c, spec, "5eed0001")
        seed_labels_outcomes(c, spec, "5eed0001")
        bodies = {}
        for table, limit in (("predictions", n_predictions), ("labels", n_predictions // 2)):
            r = c.raw_query(f"SELECT * EXCEPT ingested_at FROM driftline.{table} WHERE model = 'src' "
                            f"ORDER BY timestamp LIMIT {limit} FORMAT JSONEachRow")
            lines = r.splitlines()
            bodies[table] = [b"\n".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]
            if table == "predictions":  # most models never send a shadow: measure that case too
                plain = [line for line in lines if b'"variant":"shadow"' not in line][:len(lines) * 2 // 3]
                bodies[NO_SHADOWS] = [b"\n".join(plain[i:i + batch]) for i in range(0, len(plain), batch)]
        cols = {t: [n for n, in c.query(f"SELECT name FROM system.columns WHERE database = 'driftline' "
                                         f"AND table = '{t}' AND name != 'ingested_at' ORDER BY position").result_rows]
                for t in ("predictions", "labels")}
        cols[NO_SHADOWS] = cols["predictions"]
        results = {}
        k = [0]
        cpu_us: dict[Any, float] = {}

        def rate(table: str) -> float:
            """Rows/s of the inserts (wall); the store's CPU µs per row goes to ``cpu_us[k]``."""
            if table != "labels":  # labels go to the model of the predictions inserted just before
                k[0] += 1
            model = f'"model":"m{k[0]}"'.encode()  # a fresh model each run: no earlier rows
            c0 = _cpu_s(store.pid)
            t0 = time.perf_counter()
            rows = 0
            for body in bodies[table]:
                body = body.replace(b'"model":"src"', model)
                c.raw_insert(f"driftline.{table.split()[0]}", column_names=cols[table], insert_block=body,
                             fmt="JSONEachRow")
                rows += body.count(b"\n") + 1
            wall = time.perf_counter() - t0
            cpu_us[k[0]] = (_cpu_s(store.pid) - c0) / rows * 1e6
            return rows / wall

        rollups.drop(c)  # migrate created them
        tables = ("predictions", "labels", NO_SHADOWS)  # labels after their predictions, as usual
        for table in tables:
            results[("without MVs", table)] = (rate(table), cpu_us[k[0]])
        rollups.ensure(c)
        for table in tables:
            results[("with MVs", table)] = (rate(table), cpu_us[k[0]])
        print("insert cost of the rollup MVs (fresh store, JSONEachRow, "
              f"{batch:,} rows per insert; store CPU µs/row; ratios = without / with)")
        for table in tables:
            (a, ca), (b, cb) = results[("without MVs", table)], results[("with MVs", table)]
            print(f"  {table:24s} without MVs {a:10,.0f} rows/s {ca:5.1f} µs   with MVs {b:10,.0f} "
                  f"rows/s {cb:5.1f} µs   ratio {b / a:.2f}  CPU ratio {ca / cb:.2f}")
        if not per_view:
            return
        print("  each MV alone (ratio to a baseline run just before it):")
        for mv in rollups.VIEWS:
            c.command(f"DROP VIEW driftline.{mv}")
        # views measured together: a cascade (the 1h tier runs off the 1m table; the join views run
        # off the Null tables their first step fills); outcome inserts are not measured
        groups = [("predictions", ["rollup_predictions_1m_mv", "rollup_predictions_1h_mv"]),
                  ("predictions", ["rollup_features_1h_mv"]), ("predictions", ["rollup_prediction_index_mv"]),
                  ("predictions", ["rollup_early_mv", "rollup_labels_1m_from_predictions_mv",
                                   "rollup_outcomes_1m_from_predictions_mv"]),
                  ("predictions", ["rollup_pair_index_mv"]),
                  ("predictions", ["rollup_pair_block_mv"]),
                  ("predictions", ["rollup_pair_block_mv", "rollup_shadow_1m_mv"]),
                  (NO_SHADOWS, ["rollup_pair_block_mv", "rollup_shadow_1m_mv"]),
                  ("labels", ["rollup_labels_1m_from_labels_mv"])]
        for table, names in groups:
            if table == "labels":
                rate("predictions")  # a fresh model with its predictions, then its labels
            base = rate(table)
            base_cpu = cpu_us[k[0]]
            if table == "labels":
                rate("predictions")
            for name in names:
                c.command(f"CREATE MATERIALIZED VIEW driftline.{name} TO driftline.{rollups.VIEWS[name][0]} "
                          f"AS {rollups.VIEWS[name][1]}")
            r = rate(table)
            for name in names:
                c.command(f"DROP VIEW driftline.{name}")
            print(f"    {table:24s} {' + '.join(names):52s} ratio {r / base:.2f}  "
                  f"CPU ratio {base_cpu / cpu_us[k[0]]:.2f}")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_queries(url: str, v: Any, repeat: int = 3, raw: bool = False) -> dict[str, float]:
    from driftline.dashboard.data import run

    out = {}
    for query in panel_queries(v, raw):
        times = []
        for _ in range(repeat):
            times.append(run(url, query.sql, dict(query.params)).elapsed_s)
        out[query.name] = statistics.median(times)
    return out


def time_pages(model: str, start: dt.datetime, end: dt.datetime) -> dict[str, tuple[float, float]]:
    from streamlit.testing.v1 import AppTest

    from driftline.dashboard.view import iso

    out = {}
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.query_params.update({"page": page, "model": model, "from": iso(start), "to": iso(end)})
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].value}")
        t0 = time.perf_counter()
        at.run()  # a rerun, as after a widget change: served from the 10 s cache
        out[page] = (cold, time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--predictions", type=int, default=10_000_000, help="logged predictions (rows)")
    ap.add_argument("--raw", action="store_true", help="also time the raw-table SQL of each panel")
    ap.add_argument("--skip-insert-cost", action="store_true")
    ap.add_argument("--per-view", action="store_true", help="also the insert cost of each MV alone")
    ap.add_argument("--insert-batch", type=int, default=10_000,
                    help="rows per insert for the insert cost (the views' cost per insert is mostly fixed)")
    args = ap.parse_args()
    if not args.skip_insert_cost:
        insert_cost(batch=args.insert_batch, per_view=args.per_view)
    import streamlit  # noqa: F401  (import before timing)

    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.dashboard.data import run
    from tests.dashboard.seed import SeedSpec, seed
    from driftline.dashboard.view import View

    import logging
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    week = 7 * 86400
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp, start_chstore(Path(tmp), port=0) as store:
        client = connect(store.url)
        os.environ["DRIFTLINE_CLICKHOUSE_URL"] = store.url
        specs = {}
        for name, rows in (("bench-1m", 1_000_000), ("bench-10m", args.predictions)):
            # 1 + shadow_share rows per request: pick the request count that logs `rows` rows.
            spec = SeedSpec(model=name, n_predictions=int(rows / 1.5), end=end, span_s=week,
                            window_s=3600)
            t0 = time.perf_counter()
            seed(client, spec)
            n = client.query(f"SELECT count() FROM driftline.predictions WHERE model = '{name}'").result_rows[0][0]
            print(f"seeded {name}: {n:,} predictions in {time.perf_counter() - t0:.1f} s")
            specs[name] = spec
        client.command("OPTIMIZE TABLE driftline.predictions FINAL")  # steady state: merged parts
        print(f"\nstore: {store.url}; total predictions "
              f"{client.query('SELECT count() FROM driftline.predictions').result_rows[0][0]:,}")
        results: dict[str, Any] = {}
        for name, spec in specs.items():
            for label, start in (("24h", end - dt.timedelta(days=1)), ("7d", end - dt.timedelta(days=7))):
                v = View(name, start, end)
                base = statistics.median(run(store.url, "SELECT count() FROM driftline.predictions "
                                                        "WHERE model = {m:String}", {"m": name}).elapsed_s
                                         for _ in range(5))
                qs = time_queries(store.url, v)
                raw = time_queries(store.url, v, repeat=1, raw=True) if args.raw else {}
                pages = time_pages(name, start, end)
                results[(name, label)] = (base, qs, pages, raw)
        for (name, label), (base, qs, pages, raw) in results.items():
            print(f"\n== {name}, range {label} ==  baseline SELECT count(): {base * 1000:.1f} ms")
            print(f"{'panel query':32s} {'ms':>8s} {'x count()':>10s}" + ("  raw SQL ms" if raw else ""))
            for k, s in sorted(qs.items(), key=lambda kv: -kv[1]):
                flag = "  OVER 300 ms" if s > 0.3 else ""
                r = f"  {raw[k] * 1000:10.1f}" if k in raw else ""
                print(f"{k:32s} {s * 1000:8.1f} {s / base:10.1f}{r}{flag}")
            print(f"{'page (AppTest)':32s} {'cold s':>8s} {'warm s':>8s}")
            for p, (cold, warm) in pages.items():
                flag = "  OVER 2 s" if cold > 2 else ""
                print(f"{p:32s} {cold:8.2f} {warm:8.2f}{flag}")
        big = [r for (n, _), r in results.items() if n == "bench-10m"]
        worst_q = max(max(qs.values()) for _, qs, _, _ in big)
        worst_p = max(max(c for c, _ in pages.values()) for _, _, pages, _ in big)
        print(f"\nsummary (10M): slowest panel query {worst_q * 1000:.0f} ms (target 300), "
              f"slowest page {worst_p:.2f} s (target 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
