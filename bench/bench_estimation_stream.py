"""Performance estimation's cost in the stream: the detector engine with and without it (issue 18).

    python bench/bench_estimation_stream.py [--predictions 40000] [--rounds 5] [--features 1]
                                            [--configs default,lean] [--out bench/results]

One binary classifier: calibrated scores of one input ``x`` (the stream of
``tests/detectors/test_estimate_stream.py``) and ``--features`` - 1 more inputs of noise;
``--predictions`` predictions, 40 % of them labelled 1.5 windows later (40,000 predictions:
16,000 labels), count windows of 1,000. The reference carries a CBPE estimator fitted on 3,000
labelled rows. Two engine configurations, each run with ``performance_estimation.enabled`` on
and off:

* ``default``: the engine's defaults (data drift, prediction drift, quality, concept drift on the
  joined labels): what a user runs;
* ``lean``: everything but concept drift off (the engine's cheapest useful configuration, so the
  estimation's share is largest).

Figures: CPU seconds per prediction of each run (``time.process_time``; one process, runs in
turn, the order alternating per round) and ``ratio = on / off`` per round, with the median over
the rounds, and the ratio of the fastest run of each (the least disturbed: the machine is
shared; running both engines side by side in chunks was tried and is worse, because the garbage
collector is the process's and charges one engine for the other's garbage). Target: ratio
<= 1.2. The estimation's cost per prediction does not depend on the inputs, the engine's grows
with them (drift per input): one input is the hardest case. Results:
``<out>/estimation_stream.json`` (``estimation_stream_<N>f.json`` for N inputs).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.detectors.test_estimate_stream import _events, _rows  # noqa: E402
from tests.detectors.detector_streams import prediction  # noqa: E402

WINDOW = 1000


def _more(features: dict, n: int, seed: int) -> dict:
    """The model's other inputs: ``n`` - 1 standard normal features besides ``x`` (no signal)."""
    rng = random.Random(seed)
    return {**features, **{f"z{j}": rng.gauss(0.0, 1.0) for j in range(1, n)}}


def _reference(features: int):
    from driftline.detectors.estimate_fit import fit_estimator
    from driftline.detectors.reference import from_events

    rows = _rows(3000, seed=7)
    info = fit_estimator([{"0": 1 - p, "1": p} for _, p, _ in rows], [y for *_, y in rows])
    events = [prediction(10**6 + i, _more({"x": x}, features, i), {"0": 1 - p, "1": p})
              for i, (x, p, _) in enumerate(rows)]
    return dataclasses.replace(from_events(events, "m", "v1"), estimator=info)


def _stream(predictions: int, features: int) -> list:
    evs = _events(_rows(predictions, seed=1))
    for i, (kind, ev) in enumerate(evs):
        if kind == "p":
            ev["features"] = _more(ev["features"], features, 10**7 + i)
    return evs


def _config(kind: str, estimation: bool):
    from driftline.detectors.config import DetectorsConfig

    lean = {"data_drift": {"enabled": False}, "prediction_drift": {"enabled": False},
            "multivariate": {"enabled": False}, "quality": {"enabled": False}} if kind == "lean" else {}
    return DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": WINDOW}, "min_samples": 100, **lean,
        "concept": {"detectors": ["adwin"]}, "performance_estimation": {"enabled": estimation}})


def run(kind: str, estimation: bool, evs, reference) -> dict:
    from driftline.detectors.engine import DetectorEngine

    gc.collect()  # the garbage of the run before is not this run's to collect
    eng = DetectorEngine(_config(kind, estimation), references={("m", "v1"): reference})
    t = time.process_time()
    for k, ev in evs:
        (eng.observe_prediction if k == "p" else eng.observe_label)(ev)
    eng.flush()
    cpu = time.process_time() - t
    rows = len(eng.poll_estimates())
    assert (rows > 0) == estimation, rows
    return {"cpu_s": cpu, "estimate_rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--predictions", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configs", default="default,lean")
    ap.add_argument("--features", type=int, default=1, help="the model's inputs (1: the test stream's x alone)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    evs = _stream(args.predictions, args.features)
    labels = sum(1 for k, _ in evs if k == "l")
    reference = _reference(args.features)
    results: dict = {"predictions": args.predictions, "labels": labels, "window": WINDOW, "features": args.features,
                     "load_average_start": os.getloadavg(), "configs": {}}
    for kind in args.configs.split(","):
        rounds = []
        run(kind, True, evs[:4000], reference)  # warm the imports and caches
        for i in range(args.rounds):
            pair = {}
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                pair[on] = run(kind, on, evs, reference)["cpu_s"] / args.predictions * 1e6
            rounds.append({"off_us_per_prediction": pair[False], "on_us_per_prediction": pair[True],
                           "ratio": pair[True] / pair[False]})
            print(kind, json.dumps(rounds[-1]), flush=True)
        best = {k: min(r[k] for r in rounds) for k in ("off_us_per_prediction", "on_us_per_prediction")}
        results["configs"][kind] = {
            "rounds": rounds, "median_ratio": statistics.median(r["ratio"] for r in rounds),
            "ratio_of_minima": best["on_us_per_prediction"] / best["off_us_per_prediction"], **best}
        print(f"{kind}: median ratio {results['configs'][kind]['median_ratio']:.3f}, ratio of the "
              f"fastest runs {results['configs'][kind]['ratio_of_minima']:.3f}", flush=True)
    results["load_average_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    name = "estimation_stream.json" if args.features == 1 else f"estimation_stream_{args.features}f.json"
    (args.out / name).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
