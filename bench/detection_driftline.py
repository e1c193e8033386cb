"""driftline's side of the detection benchmark: the engine as a user who configures nothing runs it.

One :class:`~driftline.detectors.engine.DetectorEngine` per case, with no configuration: the
model is added the way the collector adds a model it has no settings for
(``DetectorsConfig().default_for(model)``), so its reference is whatever the defaults build
(today the first :data:`~driftline.detectors.config.DEFAULT_FIRST_EVENTS` events). Events are
schema-v1 prediction dicts with one feature ``x``, a constant prediction and event times at
``events_per_s``, fed through ``observe_many`` in chunks. A window is *flagged* when any row of
the data-drift or data-quality detector for ``x`` carries ``drift = True`` (the per-feature
verdict; summary rows such as ``excluded`` do not count).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import Any

import numpy as np

__all__ = ["default_settings", "run_case", "FEATURE", "MODEL"]

FEATURE = "x"
MODEL = "bench"
_T0 = int(_dt.datetime(2026, 1, 5, tzinfo=_dt.timezone.utc).timestamp())
_FEATURE_DETECTORS = ("data_drift", "quality")


def default_settings() -> tuple[int, int, str]:
    """(window size, reference size, how the reference is built) of a model nobody configured."""
    from driftline.detectors.config import DetectorsConfig

    cfg = DetectorsConfig().default_for(MODEL)
    if cfg.window.kind != "count":
        raise SystemExit(f"the default window is {cfg.window.kind!r}; this benchmark needs count windows")
    ref = cfg.reference
    if ref.source != "first_events":
        # The engine still builds whatever the defaults say; the peers get the first events.
        print(f"warning: the default reference is {ref.source!r}, not first_events: the peers get the "
              f"first {ref.first_events:,} events", file=sys.stderr)
    return cfg.window.size, ref.first_events, f"first {ref.first_events:,} events ({ref.source})"


def _events(values: list[Any], start: int, rate: int) -> list[dict[str, Any]]:
    fracs = [f".{k * (1_000_000 // rate):06d}Z" for k in range(rate)]
    out = []
    sec_of, stamp = -1, ""
    for j, v in enumerate(values, start):
        sec, k = divmod(j, rate)
        if sec != sec_of:
            sec_of = sec
            stamp = _dt.datetime.fromtimestamp(_T0 + sec, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        out.append({"type": "prediction", "event_id": f"00000000-0000-7000-8000-{j:012x}",
                    "timestamp": stamp + fracs[k], "model": MODEL, "model_version": "v1",
                    "features": {FEATURE: v}, "prediction": 0})
    return out


def _plain_values(values: np.ndarray, kind: str, levels: tuple[str, ...]) -> list[Any]:
    if kind == "categorical":
        return [levels[c] if c >= 0 else None for c in values.tolist()]
    return [None if v != v else v for v in values.tolist()]  # NaN -> None (missing)


def run_case(values: np.ndarray, kind: str, levels: tuple[str, ...], *, window: int, eval_start: int,
             events_per_s: int = 100, chunk: int = 50_000) -> dict[str, Any]:
    """Feed one case's whole stream; return the flag of every evaluated window and the cost."""
    from driftline.detectors.base import SUMMARY_STATISTICS
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine

    eng = DetectorEngine(DetectorsConfig())
    eng.ensure_model(DetectorsConfig().default_for(MODEL))
    n_windows = (len(values) - eval_start) // window
    flagged = np.zeros(n_windows, dtype=bool)
    by_detector = {d: np.zeros(n_windows, dtype=bool) for d in _FEATURE_DETECTORS}
    seen = np.zeros(n_windows, dtype=bool)
    engine_s = 0.0
    cpu0 = time.process_time()  # the peers run in another process: this is driftline's CPU
    for lo in range(0, len(values), chunk):
        evs = _events(_plain_values(values[lo:lo + chunk], kind, levels), lo, events_per_s)
        t0 = time.perf_counter()
        eng.observe_many(evs)
        rows = eng.poll(float("-inf"))
        engine_s += time.perf_counter() - t0
        for r in rows:
            if r.feature != FEATURE or r.detector not in _FEATURE_DETECTORS:
                continue
            first = round((r.window_start.timestamp() - _T0) * events_per_s)
            w = (first - eval_start) // window
            if not 0 <= w < n_windows:
                continue
            seen[w] = True
            if r.drift and r.statistic not in SUMMARY_STATISTICS:
                flagged[w] = by_detector[r.detector][w] = True
    t0 = time.perf_counter()
    eng.flush()
    engine_s += time.perf_counter() - t0
    return {"flagged": flagged, "judged": int(seen.sum()), "seconds": engine_s,
            "cpu_s": time.process_time() - cpu0,
            "us_per_event": engine_s / len(values) * 1e6, "flagged_by_detector": {d: int(a.sum()) for d, a in by_detector.items()}}
