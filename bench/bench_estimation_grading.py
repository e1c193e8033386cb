"""Performance estimation's grading state with and without its cap (issue 18).

    python bench/bench_estimation_grading.py [--windows 24] [--window 5000] [--delay-windows 16]

One classifier model with CBPE (fitted on a labelled reference), one ``region`` tag of 5 values
(6 segments with the whole), every prediction labelled ``--delay-windows`` windows later: every
closed window of the last ``delay`` awaits its labels at once. Run under
``performance_estimation.grade_max_rows`` = the default and = 10,000,000 (no cap in effect).

Figures per run: the labelled rows the grading windows hold at most, the size of the model's
saved estimation state at that moment (JSON bytes, before compression), the windows that stopped
awaiting labels, and how many (window, metric) rows got a realised value. Sizes, not times:
this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.detectors.detector_streams import label, prediction, uid  # noqa: E402

REGIONS = ("eu", "us", "apac", "latam", "mea")


def _events(n: int, delay: float, seed: int = 1) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    evs = []
    for i in range(n):
        x = rng.gauss(0.0, 1.0)
        p = 1.0 / (1.0 + math.exp(-2.0 * x))
        y = int(rng.random() < p)
        tags = {"region": REGIONS[i % len(REGIONS)]}
        evs.append((float(i), "p", prediction(i, {"x": x}, {"0": 1 - p, "1": p}, t=float(i), tags=tags)))
        evs.append((i + delay + 0.5, "l", label(i, uid(i), y, t=i + delay + 0.5)))
    evs.sort(key=lambda e: e[0])
    return [(k, ev) for _, k, ev in evs]


def run(cap: int, evs: list[tuple[str, dict]], window: int) -> dict[str, float]:
    import dataclasses

    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine
    from driftline.detectors.estimate_fit import fit_estimator
    from driftline.detectors.reference import from_events

    rng = random.Random(7)
    ref_rows = [(x, 1.0 / (1.0 + math.exp(-2.0 * x))) for x in (rng.gauss(0, 1) for _ in range(3000))]
    info = fit_estimator([{"0": 1 - p, "1": p} for _, p in ref_rows],
                         [int(rng.random() < p) for _, p in ref_rows])
    ref = dataclasses.replace(from_events([prediction(10**7 + i, {"x": x}, {"0": 1 - p, "1": p})
                                           for i, (x, p) in enumerate(ref_rows)], "m", "v1"), estimator=info)
    cfg = DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": window}, "min_samples": 100,
        "data_drift": {"enabled": False}, "prediction_drift": {"enabled": False},
        "multivariate": {"enabled": False}, "quality": {"enabled": False}, "concept": {"detectors": ["adwin"]},
        "segments": {"tags": ["region"]}, "performance_estimation": {"grade_max_rows": cap}})
    eng = DetectorEngine(cfg, references={("m", "v1"): ref})
    est = eng.monitors["m"].estimation
    most, state_bytes, realised = 0, 0, 0
    for i, (kind, ev) in enumerate(evs):
        (eng.observe_prediction if kind == "p" else eng.observe_label)(ev)
        most = max(most, est.grading.rows)
        if i % 5000 == 0:  # sizing the state is costly: every 5,000 events
            state_bytes = max(state_bytes, len(json.dumps(est.get_state())))
    eng.flush()
    final = {}
    for r in eng.poll_estimates():
        final[(r.segment, r.window_start, r.metric)] = r
    realised = sum(1 for r in final.values() if r.realised is not None)
    return {"grade_max_rows": cap, "rows_held_max": most, "state_json_bytes_max": state_bytes,
            "windows_evicted": est.grading.evicted, "rows_with_realised": realised, "rows": len(final)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=24)
    ap.add_argument("--window", type=int, default=5000)
    ap.add_argument("--delay-windows", type=float, default=16.0)
    args = ap.parse_args()
    from driftline.detectors.config import PerformanceEstimationSettings

    evs = _events(args.windows * args.window, args.delay_windows * args.window)
    default = PerformanceEstimationSettings().grade_max_rows
    for cap in (default, 10_000_000):
        print(json.dumps(run(cap, evs, args.window)), flush=True)


if __name__ == "__main__":
    main()
