"""Detector cost per event, detection delay and false alarms per million events.

    python bench/bench_detectors.py [--quick]

1. Cost per event of the engine (data drift + quality + prediction drift, segments off) for 20
   and 200 features at window lengths 1,000 and 10,000, against a baseline that keeps the raw
   window and runs scipy's KS and Wasserstein at window close (what batch tools do): driftline's
   cost must not grow with the window, the baseline's does.
2. Detection delay (events after the change point until the first alarm) on synthetic streams:
   mean shift, variance change, category mix (window 1,000), concept change on the error stream
   (river ADWIN / DDM / Page-Hinkley / KSWIN), shadow disagreeing on 10%.
3. False alarms per million events on stationary streams.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np


def _features(rng: random.Random, n_features: int, shift: float = 0.0) -> dict:
    f = {}
    for i in range(n_features):
        if i % 5 == 4:
            f[f"f{i}"] = rng.choice("abcdef")
        else:
            f[f"f{i}"] = rng.gauss(shift if i == 0 else 0.0, 1.0)
    return f


def _event(i: int, f: dict) -> dict:
    return {"event_id": f"00000000-0000-7000-8000-{i:012x}", "timestamp": "2026-11-24T00:00:00Z",
            "model": "m", "model_version": "v1", "features": f, "prediction": {"1": 0.7, "0": 0.3}}


def cost_per_event(n_features: int, window: int, n_events: int) -> tuple[float, float]:
    from scipy import stats

    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine
    from driftline.detectors.reference import from_events

    rng = random.Random(0)
    ref_events = [_event(10**7 + i, _features(rng, n_features)) for i in range(5000)]
    events = [_event(i, _features(rng, n_features)) for i in range(n_events)]
    eng = DetectorEngine(DetectorsConfig.from_mapping({
        "model": "m", "window": {"size": window}, "min_samples": 100, "concept": {"enabled": False},
        "shadow": {"enabled": False}}))
    eng.set_reference(from_events(ref_events, "m", "v1"))
    t0 = time.perf_counter()
    for ev in events:
        eng.observe_prediction(ev)
    eng.flush()
    ours = (time.perf_counter() - t0) / n_events

    # Baseline: raw window per feature, scipy two-sample tests against the raw reference at close.
    ref_cols = {k: np.array([e["features"][k] for e in ref_events]) for k in ref_events[0]["features"]}
    numeric = [k for k, v in ref_cols.items() if v.dtype.kind == "f"]
    t0 = time.perf_counter()
    raw: dict[str, list] = {k: [] for k in ref_cols}
    for j, ev in enumerate(events, 1):
        for k, v in ev["features"].items():
            raw[k].append(v)
        if j % window == 0 or j == n_events:
            for k in numeric:
                cur = np.asarray(raw[k])
                stats.ks_2samp(ref_cols[k], cur)
                stats.wasserstein_distance(ref_cols[k], cur)
            raw = {k: [] for k in ref_cols}
    base = (time.perf_counter() - t0) / n_events
    return ours, base


def data_drift_delay(kind: str, change: int = 20_000, n: int = 40_000, window: int = 1000) -> int | None:
    from driftline.detectors.config import DataDriftSettings
    from driftline.detectors.drift import DataDriftDetector
    from driftline.detectors.reference import from_events

    rng = random.Random(1)

    def gen(after: bool) -> dict:
        f = {"x": rng.gauss(0, 1), "y": rng.gauss(0, 1), "c": rng.choices("abc", (0.6, 0.3, 0.1))[0]}
        if after and kind == "mean_shift":
            f["x"] += 0.5
        if after and kind == "variance":
            f["y"] *= 2.0
        if after and kind == "category_mix":
            f["c"] = rng.choices("abc", (0.3, 0.3, 0.4))[0]
        return f

    ref = from_events([{"features": gen(False), "prediction": 0} for _ in range(5000)], "m", "v1")
    det = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=200)
    for i in range(1, n + 1):
        det.update(gen(i > change))
        if i % window == 0:
            det.close_window()
            if det.drift_detected:
                return i - change if i > change else -(change - i)
    return None


def stationary_data_alarms(n: int, window: int = 1000) -> tuple[int, int, int]:
    """(windows, windows with a verdict alarm, windows with a KS/chi2 alarm after BH)."""
    from driftline.detectors.config import DataDriftSettings
    from driftline.detectors.drift import DataDriftDetector
    from driftline.detectors.reference import from_events

    rng = random.Random(2)
    gen = lambda: {"x": rng.gauss(0, 1), "y": rng.expovariate(1.0), "z": rng.uniform(0, 1),  # noqa: E731
                   "c": rng.choices("abc", (0.6, 0.3, 0.1))[0], "n": rng.randint(0, 9)}
    ref = from_events([{"features": gen(), "prediction": 0} for _ in range(20_000)], "m", "v1")
    det = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=200)
    windows = verdict = pval = 0
    for i in range(1, n + 1):
        det.update(gen())
        if i % window == 0:
            res = det.close_window()
            windows += 1
            verdict += det.drift_detected
            pval += any(r.drift for r in res if r.statistic in ("ks", "chi2"))
    return windows, verdict, pval


def concept(method: str, n: int, change: int | None, stream: str = "binary") -> tuple[int | None, int]:
    """(delay after change, alarms before change). binary: 0/1 errors, 5% -> 20% error rate;
    regression: absolute errors of N(0, 1) residuals -> N(0, 1.5)."""
    from driftline.detectors.concept import ErrorStreamDetector

    rng = random.Random(3)
    det = ErrorStreamDetector(method, seed=1)
    first_after = None
    before = 0
    for i in range(1, n + 1):
        after = change is not None and i > change
        if stream == "binary":
            err = float(rng.random() < (0.2 if after else 0.05))
        else:
            err = abs(rng.gauss(0, 1.5 if after else 1.0))
        det.update(err)
        if det.drift_detected:
            if after:
                first_after = i - change  # type: ignore[operator]
                break
            before += 1
            det.close_window()  # clear the sticky flag; count each alarm once
    return first_after, before


def shadow_delay(change: int = 5000, window: int = 1000) -> int | None:
    from driftline.detectors.config import ShadowSettings
    from driftline.detectors.shadow import ShadowDivergenceDetector

    rng = random.Random(4)
    det = ShadowDivergenceDetector("v1->v2", ShadowSettings(), min_samples=200)
    for i in range(1, 4 * change):
        cls = rng.choice("abc")
        sh = cls if i <= change or rng.random() >= 0.1 else "z"
        det.update({"prediction": cls}, {"prediction": sh})
        if i % window == 0:
            det.close_window()
            if det.drift_detected:
                return i - change
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller streams (for a smoke run)")
    ap.add_argument("--only-cost", action="store_true", help="section 1 only")
    args = ap.parse_args()
    q = args.quick
    print("== cost per event (engine: data drift + quality + prediction drift; best of 3) ==")
    for nf in (20, 200):
        for window in (1000, 10_000):
            n = (20_000 if nf == 20 else 10_000) // (4 if q else 1)
            runs = [cost_per_event(nf, window, max(n, window)) for _ in range(1 if q else 3)]
            ours, base = min(r[0] for r in runs), min(r[1] for r in runs)
            print(f"{nf:>4} features, window {window:>6}: driftline {ours * 1e6:8.1f} us/event "
                  f"({1 / ours:8.0f} ev/s) | raw-window+scipy baseline {base * 1e6:8.1f} us/event "
                  f"| ratio {base / ours:5.2f}x")
    if args.only_cost:
        return 0
    print("== detection delay (events after the change point; window 1,000) ==")
    for kind in ("mean_shift", "variance", "category_mix"):
        print(f"data drift {kind:<13}: {data_drift_delay(kind)}")
    print(f"shadow 10% disagreement : {shadow_delay()}")
    for m, stream in (("adwin", "binary"), ("ddm", "binary"), ("page_hinkley", "binary"), ("kswin", "binary"),
                      ("adwin", "regression"), ("page_hinkley", "regression"), ("kswin", "regression")):
        delay, before = concept(m, 60_000, 30_000, stream)
        print(f"concept.{m:<13} ({stream:<10}): delay {delay} labelled events after the change; "
              f"alarms in the 30,000 before it: {before}")
    print("== false alarms per million stationary events ==")
    n = 200_000 if q else 1_000_000
    windows, verdict, pval = stationary_data_alarms(n)
    scale = 1_000_000 / n
    print(f"data drift (5 features, {windows} windows): verdict alarms {verdict * scale:.0f}/M events "
          f"({verdict}/{windows} windows); KS/chi2 after BH {pval * scale:.0f}/M ({pval}/{windows} windows)")
    for m, stream in (("adwin", "binary"), ("ddm", "binary"), ("page_hinkley", "binary"), ("kswin", "binary"),
                      ("adwin", "regression"), ("page_hinkley", "regression"), ("kswin", "regression")):
        nn = (100_000 if m == "kswin" else 1_000_000) // (5 if q else 1)
        t0 = time.perf_counter()
        _, alarms = concept(m, nn, None, stream)
        dt = time.perf_counter() - t0
        print(f"concept.{m:<13} ({stream:<10}): {alarms * 1_000_000 / nn:.0f} alarms per million "
              f"(over {nn:,} events, {dt / nn * 1e6:.1f} us/update)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
