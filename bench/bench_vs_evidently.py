"""driftline's data-drift detector vs. Evidently's DataDriftPreset on the same data.

1M reference rows and 1M current rows x 50 features (40 numeric, 10 categorical); drift in 5
(mean shift, variance change, log-normal shift, wider range, category mix). Both sides use the
same tests and thresholds (normalised Wasserstein > 0.1 for numbers, Jensen-Shannon > 0.1 for
categories: Evidently's defaults for large samples, driftline's verdict defaults).

Evidently runs in its own virtualenv (it pins pandas<3 and is not a driftline dependency):

    python -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently "pandas<3" pyarrow
    python bench/bench_vs_evidently.py [--rows 1000000] [--evidently-python /tmp/evvenv/bin/python]

driftline is timed three ways: the columnar micro-batch path (what a collector does with a
consumed batch), the per-event streaming path (measured on a slice and scaled to all rows), and
the reference build. Evidently is timed on the report run alone and with its parquet reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_NUM, N_CAT = 40, 10
DRIFTED = {"num_00", "num_01", "num_02", "num_03", "cat_00"}

EVIDENTLY_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
t1 = time.perf_counter()
num = [c for c in ref.columns if c.startswith("num_")]
cat = [c for c in ref.columns if c.startswith("cat_")]
dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd),
                                       Dataset.from_pandas(ref, data_definition=dd))
t2 = time.perf_counter()
drifted = []
for m in snap.dict()["metrics"]:
    cfg = m.get("config", {})
    if cfg.get("type", "").endswith("ValueDrift") and m["value"] >= cfg["threshold"]:
        drifted.append(cfg["column"])
print(json.dumps({"drifted": sorted(drifted), "report_s": t2 - t1, "total_s": t2 - t0}))
"""


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(drift: bool) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {}
        for i in range(N_NUM):
            kind = i % 4
            if kind == 0:
                x = rng.normal(i, 1 + i % 3, rows)
            elif kind == 1:
                x = rng.lognormal(0, 0.5, rows)
            elif kind == 2:
                x = rng.uniform(0, 10, rows)
            else:
                x = rng.integers(0, 100, rows).astype(float)
            cols[f"num_{i:02d}"] = x
        for j in range(N_CAT):
            k = 3 + j
            p = np.arange(k, 0, -1, dtype=float)
            p /= p.sum()
            if drift and j == 0:
                p = p[::-1]
            cols[f"cat_{j:02d}"] = rng.choice(np.array([f"c{c}" for c in range(k)]), rows, p=p)
        if drift:
            cols["num_00"] = cols["num_00"] + 0.3  # mean shift (std 1)
            cols["num_01"] = np.exp(np.log(cols["num_01"]) * 1.6)  # wider log-normal
            cols["num_02"] = rng.uniform(0, 13, rows)  # wider range
            cols["num_03"] = rng.integers(0, 100, rows) * 0.8  # rescaled
        return pd.DataFrame(cols)

    return frame(False), frame(True)


def run_driftline(ref: pd.DataFrame, cur: pd.DataFrame, stream_rows: int) -> dict:
    from driftline.detectors.config import DataDriftSettings
    from driftline.detectors.drift import DataDriftDetector
    from driftline.detectors.reference import from_dataframe
    import scipy.stats  # noqa: F401 - import cost is not detection cost (Evidently's imports aren't timed either)

    t0 = time.perf_counter()
    reference = from_dataframe(ref, "bench", "v1", sample_size=0)
    t1 = time.perf_counter()
    det = DataDriftDetector(reference.features, DataDriftSettings(), min_samples=100)
    det.window.update_columns({c: cur[c] for c in cur.columns}, len(cur))
    det.close_window()
    t2 = time.perf_counter()
    batch_drifted = set(det.drifted)
    # Per-event path: the engine's hot loop on dict events, measured on a slice.
    records = cur.iloc[:stream_rows].to_dict("records")
    det2 = DataDriftDetector(reference.features, DataDriftSettings(), min_samples=100)
    t3 = time.perf_counter()
    for r in records:
        det2.update(r)
    det2.close_window()
    t4 = time.perf_counter()
    per_event_s = (t4 - t3) / stream_rows
    return {"reference_s": t1 - t0, "batch_s": t2 - t1, "drifted": sorted(batch_drifted),
            "stream_per_event_us": per_event_s * 1e6, "stream_all_rows_s": per_event_s * len(cur),
            "stream_drifted_on_slice": sorted(det2.drifted)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--stream-rows", type=int, default=100_000)
    ap.add_argument("--evidently-python", default="/tmp/evvenv/bin/python")
    args = ap.parse_args()
    ref, cur = make_data(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        rp, cp = Path(tmp) / "reference.parquet", Path(tmp) / "current.parquet"
        ref.to_parquet(rp)
        cur.to_parquet(cp)
        ours = run_driftline(ref, cur, min(args.stream_rows, args.rows))
        script = Path(tmp) / "ev.py"
        script.write_text(EVIDENTLY_SCRIPT)
        proc = subprocess.run([args.evidently_python, str(script), str(rp), str(cp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        ev = json.loads(proc.stdout.strip().splitlines()[-1])
    ours_total = ours["reference_s"] + ours["batch_s"]
    print(f"data: {args.rows:,} reference rows + {args.rows:,} current rows x {N_NUM + N_CAT} features, "
          f"drift injected in {sorted(DRIFTED)}")
    print(f"evidently DataDriftPreset : drifted={ev['drifted']}  report {ev['report_s']:.2f} s "
          f"(with parquet reads {ev['total_s']:.2f} s)")
    print(f"driftline micro-batch     : drifted={ours['drifted']}  reference {ours['reference_s']:.2f} s + "
          f"window {ours['batch_s']:.2f} s = {ours_total:.2f} s")
    print(f"driftline per-event stream: {ours['stream_per_event_us']:.1f} us/event -> "
          f"{ours['stream_all_rows_s']:.1f} s for all current rows (measured on {min(args.stream_rows, args.rows):,}; "
          f"drifted on that slice={ours['stream_drifted_on_slice']})")
    print(f"same drifted set: {set(ev['drifted']) == set(ours['drifted']) == DRIFTED}")
    print(f"ratio evidently/driftline: micro-batch incl. reference build {ev['report_s'] / ours_total:.1f}x, "
          f"window only {ev['report_s'] / ours['batch_s']:.1f}x, "
          f"per-event stream {ev['report_s'] / ours['stream_all_rows_s']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
