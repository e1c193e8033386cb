"""A data-drift window close at 3 to 1,000 numeric features: as matrices against one feature at a time.

    python bench/bench_window_close.py [--rounds 5] [--features 3,5,8,20,200,1000]

At each close a ``DataDriftDetector`` runs its calibrated tests (the missing-value rate, KS,
Wilcoxon and Mood, each on the window and pooled with the last 1, 3 and 7 windows) and its
descriptive ones (PSI, Wasserstein, Jensen–Shannon) on every feature. ``calibrated_tests`` and
``magnitude_tests`` run the numeric features as (features x bins) matrices; the baseline, in the
same run, is the one-feature-at-a-time path they keep for features that do not line up
(``columnar=False``, ``_feature_tests``). Best of ``--rounds`` repeats of 5 closes each, process
CPU; ratios below 1 mean the matrices are cheaper. Issue 17: a 1,000-feature model's event rate is
bound by the collector's CPU per event, and the window close was the largest part of it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

from driftline.detectors.calibration import PooledWindows, calibrated_tests
from driftline.detectors.config import DataDriftSettings
from driftline.detectors.drift import _feature_tests, magnitude_tests
from driftline.detectors.histogram import Histogram, profile_numeric

SETTINGS = DataDriftSettings()
DESCRIPTIVE = ("psi", "wasserstein", "jensen_shannon")


def _window(features: int) -> tuple[dict, dict, PooledWindows]:
    """Profiles from a 1,000-row reference, 7 pooled windows and a window of 500 events per feature,
    all from the reference's distribution (a drifting window costs more: its far-tail p-values take
    the saddlepoint path, the same in both)."""
    rng = np.random.default_rng(0)
    profiles, hists, pool = {}, {}, PooledWindows(max(SETTINGS.scales) - 1)
    for i in range(features):
        name = f"f{i}"
        profiles[name] = profile_numeric(name, rng.normal(0, 1, 1000).tolist(), bins=20)
        h = hists[name] = Histogram(profiles[name])
        for _ in range(pool.depth + 1):  # stationary: the pooled windows, then the window
            h.clear()
            for v in rng.normal(0, 1, 500):
                h.add(float(v))
            pool.push(name, h.counts, h.missing)
    return profiles, hists, pool


def _best(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(5):
            fn()
        best = min(best, (time.process_time() - t0) / 5)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--features", default="3,5,8,20,200,1000")
    args = ap.parse_args()
    print("| features | calibrated, matrices / one by one (ms) | ratio | descriptive, matrices / one by one (ms) "
          "| ratio | per feature, both (µs) |")
    print("|---|---|---|---|---|---|")
    for n in map(int, args.features.split(",")):
        profiles, hists, pool = _window(n)
        judged = list(profiles.items())
        cal = _best(lambda: calibrated_tests(profiles, hists, pool, SETTINGS, 50), args.rounds)
        cal0 = _best(lambda: calibrated_tests(profiles, hists, pool, SETTINGS, 50, columnar=False), args.rounds)
        mag = _best(lambda: magnitude_tests(judged, hists, DESCRIPTIVE, ()), args.rounds)
        mag0 = _best(lambda: [_feature_tests(p, hists[f], DESCRIPTIVE) for f, p in judged], args.rounds)
        print(f"| {n:,} | {cal * 1e3:.2f} / {cal0 * 1e3:.2f} | {cal / cal0:.2f}× | {mag * 1e3:.2f} / {mag0 * 1e3:.2f} "
              f"| {mag / mag0:.2f}× | {(cal + mag) / n * 1e6:.1f} / {(cal0 + mag0) / n * 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
