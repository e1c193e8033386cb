"""Disk per million events: ClickHouse sizing figures for docs/deployment.md.

Stores N realistic prediction events (default 1,000,000: 8 numeric + 2 categorical + 1 boolean
features, a class-score prediction, latency, two tags, UUIDv7 ids, one event every ~10 ms across 5
models), a label for 20% of them, and one window of drift metrics per 5,000 predictions, in the
embedded store (real ClickHouse engine, MergeTree with the production DDL of collector/store/tables.py),
merges the parts, and reads ``system.parts``.

Baseline: the same events as the JSON the SDK puts on Kafka (what the raw topics hold), so the
ratio says how much smaller the prediction log is than the raw topic.

    python bench/bench_storage.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store.client import connect  # noqa: E402
from driftline.collector.store.tables import migrate  # noqa: E402
from driftline.collector.store.writer import COLUMNS_OF, label_row, prediction_row  # noqa: E402
from driftline.sdk.ids import uuid7  # noqa: E402

BATCH = 50_000
MODELS = ["churn", "fraud", "ranker", "pricing", "credit"]
PLANS = ["free", "pro", "team", "enterprise"]
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR", "IN", "JP"]


def events(n: int, seed: int = 1):
    rng = random.Random(seed)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    for i in range(n):
        ts = start + dt.timedelta(milliseconds=10 * i + rng.randint(0, 9))
        score = rng.random()
        yield {
            "schema_version": 1, "type": "prediction", "event_id": uuid7(),
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "model": MODELS[i % len(MODELS)],
            "model_version": "3.2.0", "variant": "primary" if i % 10 else "shadow", "request_id": f"req-{i // 2}",
            "features": {
                "age": rng.randint(18, 90), "tenure_months": rng.randint(0, 120),
                "monthly_spend": round(rng.lognormvariate(3.5, 0.8), 2), "sessions_7d": rng.randint(0, 60),
                "support_tickets": rng.randint(0, 6), "discount": round(rng.random() * 0.3, 3),
                "credit_score": rng.randint(300, 850), "latency_p95_ms": round(rng.gauss(120, 30), 1),
                "plan": rng.choice(PLANS), "country": rng.choice(COUNTRIES), "is_mobile": rng.random() < 0.6,
            },
            "prediction": {"yes": round(score, 6), "no": round(1 - score, 6)},
            "latency_ms": round(rng.uniform(2, 40), 3), "status": "ok", "error": None,
            "tags": {"region": rng.choice(["eu", "us", "apac"]), "ab_arm": rng.choice(["a", "b"])},
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory(prefix="driftline-sizing-") as tmp, start_chstore(Path(tmp) / "ch") as store:
        client = connect(store.url)
        migrate(client)
        json_bytes = 0
        label_json_bytes = 0
        t0 = time.perf_counter()
        rows, labels = [], []
        rng = random.Random(2)
        for e in events(n):
            json_bytes += len(json.dumps(e, separators=(",", ":")))
            rows.append(prediction_row(e))
            if rng.random() < 0.2:
                label = {"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": e["timestamp"],
                         "model": e["model"], "model_version": e["model_version"],
                         "prediction_id": e["event_id"], "label": rng.choice(["yes", "no"]), "tags": {}}
                label_json_bytes += len(json.dumps(label, separators=(",", ":")))
                labels.append(label_row(label))
            if len(rows) >= BATCH:
                client.insert("driftline.predictions", rows, column_names=list(COLUMNS_OF["predictions"]))
                rows = []
            if len(labels) >= BATCH:
                client.insert("driftline.labels", labels, column_names=list(COLUMNS_OF["labels"]))
                labels = []
        if rows:
            client.insert("driftline.predictions", rows, column_names=list(COLUMNS_OF["predictions"]))
        if labels:
            client.insert("driftline.labels", labels, column_names=list(COLUMNS_OF["labels"]))
        # Drift metrics: per model, a window every 5,000 predictions, ~14 statistics x 12 features.
        client.command(
            "INSERT INTO driftline.drift_metrics (model, model_version, detector, feature, segment, window_start, "
            "window_end, statistic, value, p_value, threshold, drift, reference_size, current_size, details) "
            "SELECT ['churn','fraud','ranker','pricing','credit'][1 + a.number % 5], '3.2.0', 'data_drift', "
            "concat('f', toString(b.number)), '', "
            "toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalSecond(a.number * 50), "
            "toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalSecond(a.number * 50 + 50), "
            "['psi','ks','wasserstein','jensen_shannon'][1 + c.number], rand() / 4294967295.0, "
            "rand(1) / 4294967295.0, 0.2, rand(2) % 10 = 0, 5000, 5000, '{\"bins\":20}' "
            f"FROM numbers({max(1, n // 5000)}) AS a CROSS JOIN numbers(12) AS b CROSS JOIN numbers(4) AS c")
        load_s = time.perf_counter() - t0
        for table in ("predictions", "labels", "drift_metrics"):
            client.command(f"OPTIMIZE TABLE driftline.{table} FINAL")
        parts = client.query(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), sum(data_uncompressed_bytes) "
            "FROM system.parts WHERE database = 'driftline' AND active GROUP BY table ORDER BY table").result_rows
        columns = client.query(
            "SELECT column, sum(column_data_compressed_bytes) AS c, sum(column_data_uncompressed_bytes) AS u "
            "FROM system.parts_columns WHERE database = 'driftline' AND table = 'predictions' AND active "
            "GROUP BY column ORDER BY c DESC LIMIT 6"
        ).result_rows
    print(f"events: {n:,} predictions (loaded in {load_s:.1f} s incl. generation)")
    print(f"{'table':<15}{'rows':>12}{'on disk':>14}{'compressed':>14}{'uncompressed':>14}{'B/row':>8}")
    sizes = {}
    for table, rows_, disk, comp, unc in parts:
        sizes[table] = (rows_, disk)
        print(f"{table:<15}{rows_:>12,}{disk / 1e6:>11.1f} MB{comp / 1e6:>11.1f} MB{unc / 1e6:>11.1f} MB"
              f"{disk / max(rows_, 1):>8.1f}")
    p_rows, p_disk = sizes["predictions"]
    total = sum(d for _, d in sizes.values())
    print(f"predictions on disk per 1M events: {p_disk / p_rows * 1e6 / 1e6:.1f} MB; "
          f"all tables per 1M predictions: {total / p_rows * 1e6 / 1e6:.1f} MB")
    print(f"baseline, raw JSON on the Kafka topics: {(json_bytes + label_json_bytes) / 1e6:.1f} MB "
          f"({json_bytes / n:.0f} B per prediction event)")
    print(f"ratio raw JSON / ClickHouse (predictions+labels): "
          f"{(json_bytes + label_json_bytes) / (p_disk + sizes['labels'][1]):.1f}x smaller on disk")
    print("largest prediction columns (compressed): " + ", ".join(f"{c} {b / 1e6:.1f} MB" for c, b, _ in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
