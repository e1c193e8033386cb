"""Cost and calibration of the default multivariate detector (PCA reconstruction error).

    python bench/bench_multivariate.py [--events 50000] [--quick]

1. Cost per event of the detector engine (data drift + quality + prediction drift, defaults) at
   20 features (16 numeric, 4 categorical), window 1,000, CPU time of this process (the machine is
   shared), with ``multivariate.enabled`` off (as
   on main before it became the default) and on (backend ``pca``), best of 3, interleaved.
2. The detector alone: ``update`` per event and ``close_window`` per window.
3. False verdicts per window on stationary streams (20 features: Gaussian, Student-t(2),
   log-normal, mixed), several references each, and the first window after a correlation flip
   (+0.8 -> -0.8 between two features, marginals unchanged) that is flagged.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def _features(rng: random.Random, n_features: int) -> dict:
    return {f"f{i}": rng.choice("abcdef") if i % 5 == 4 else rng.gauss(0.0, 1.0) for i in range(n_features)}


def _event(i: int, f: dict) -> dict:
    return {"event_id": f"00000000-0000-7000-8000-{i:012x}", "timestamp": "2026-11-24T00:00:00Z",
            "model": "m", "model_version": "v1", "features": f, "prediction": {"1": 0.7, "0": 0.3}}


def engine_cost(n_events: int, multivariate: bool, n_features: int = 20, window: int = 1000) -> float:
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine
    from driftline.detectors.reference import from_events

    rng = random.Random(0)
    ref_events = [_event(10**7 + i, _features(rng, n_features)) for i in range(5000)]
    events = [_event(i, _features(rng, n_features)) for i in range(n_events)]
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"size": window}, "min_samples": 100, "concept": {"enabled": False},
        "shadow": {"enabled": False}, "multivariate": {"enabled": multivariate}}))
    eng.set_reference(from_events(ref_events, "m", "v1"))
    t0 = time.process_time()
    for ev in events:
        eng.observe_prediction(ev)
    eng.flush()
    return (time.process_time() - t0) / n_events


def detector_cost(n_features: int = 20, window: int = 1000, windows: int = 20) -> tuple[float, float]:
    from driftline.detectors.config import MultivariateSettings
    from driftline.detectors.pca import PCADriftDetector

    rng = random.Random(1)
    det = PCADriftDetector([_features(rng, n_features) for _ in range(1000)], MultivariateSettings())
    rows = [_features(rng, n_features) for _ in range(window)]
    upd = close = 0.0
    for _ in range(windows):
        t0 = time.process_time()
        for r in rows:
            det.update(r)
        t1 = time.process_time()
        det.close_window()
        close += time.process_time() - t1
        upd += t1 - t0
    return upd / (windows * window), close / windows


def _stream(shape: str, rng: np.random.Generator, n: int, p: int, flip: bool = False) -> list[dict]:
    x = rng.standard_normal((n, p))
    x[:, 1] = (-0.8 if flip else 0.8) * x[:, 0] + 0.6 * x[:, 1]  # corr(f0, f1) = +-0.8, N(0, 1) each
    if shape == "student_t2":
        x[:, 2:] = rng.standard_t(2, (n, p - 2))
    elif shape == "lognormal":
        x[:, 2:] = np.exp(x[:, 2:])
    rows = [{f"f{j}": float(v) for j, v in enumerate(r)} for r in x]
    if shape == "mixed":
        for i, r in enumerate(rows):
            r["f2"] = float(rng.poisson(3))
            r["f3"] = int(rng.random() < 0.1)
            r["f4"] = "abcdefghij"[min(int(rng.exponential(2)), 9)]
            r["f5"] = None if rng.random() < 0.7 else r["f5"]
            r["f6"] = 1.0
    return rows


def calibration(shape: str, references: int, windows: int, window: int = 1000,
                p: int = 20) -> tuple[int, int, int]:
    """(false verdicts, stationary windows, windows after the flip until the first verdict)."""
    from driftline.detectors.config import MultivariateSettings
    from driftline.detectors.pca import PCADriftDetector

    false = total = 0
    delays = []
    for r in range(references):
        rng = np.random.default_rng(100 + r)
        det = PCADriftDetector(_stream(shape, rng, 1000, p), MultivariateSettings())
        for _ in range(windows):
            for row in _stream(shape, rng, window, p):
                det.update(row)
            (res,) = det.close_window()
            false += res.drift
            total += 1
        for k in range(1, 6):
            for row in _stream(shape, rng, window, p, flip=True):
                det.update(row)
            if det.close_window()[0].drift:
                delays.append(k)
                break
        else:
            delays.append(99)
    return false, total, max(delays)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="smaller streams (a smoke run)")
    args = ap.parse_args()
    n = 10_000 if args.quick else args.events
    off, on = [], []
    for _ in range(3):
        off.append(engine_cost(n, False))
        on.append(engine_cost(n, True))
    print(f"engine, 20 features, window 1,000: multivariate off {min(off) * 1e6:.1f} us/event, "
          f"pca on {min(on) * 1e6:.1f} us/event, ratio {min(on) / min(off):.2f}x")
    upd, close = detector_cost()
    print(f"pca detector alone: update {upd * 1e6:.2f} us/event, close_window {close * 1e3:.2f} ms "
          f"per 1,000-row window ({close / 1000 * 1e6:.2f} us/event)")
    refs, wins = (2, 10) if args.quick else (5, 40)
    for shape in ("gaussian", "student_t2", "lognormal", "mixed"):
        false, total, delay = calibration(shape, refs, wins)
        print(f"{shape:>10}: {false} false verdicts in {total} stationary windows ({refs} references); "
              f"correlation flip flagged within {delay} window(s) for every reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
