"""Stationary and shifted feature streams as window counts, for the calibration tests and
bench/bench_calibration.py: a real :class:`DataDriftDetector` judges every window, only the
histogram counting is done in numpy (so millions of events take seconds)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from driftline.detectors.config import DataDriftSettings
from driftline.detectors.drift import DataDriftDetector
from driftline.detectors.histogram import NUMERIC, profile_categorical, profile_numeric

Draw = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, size, first event index)
_LEVELS = 60
_ZIPF = 1.0 / np.arange(1, _LEVELS + 1) ** 1.2
_ZIPF /= _ZIPF.sum()


def _categorical(p: np.ndarray) -> Draw:
    return lambda rng, k, i0: rng.choice(_LEVELS + 1, size=k, p=p).astype(float)


def _nulls(share: float, inner: Draw) -> Draw:
    def draw(rng: np.random.Generator, k: int, i0: int) -> np.ndarray:
        x = inner(rng, k, i0)
        x[rng.random(k) < share] = np.nan
        return x
    return draw


def _seasonal(rng: np.random.Generator, k: int, i0: int) -> np.ndarray:
    # One cycle every 500 events: a 1,000-event window holds two whole cycles.
    return 2.0 * np.sin(2 * np.pi * (i0 + np.arange(k)) / 500.0) + rng.normal(size=k)


def _new_levels(share: float) -> np.ndarray:
    p = np.append(_ZIPF * (1 - share), share)  # level 60: never in the reference
    return p


#: stationary shapes: name -> (draw, categorical?)
SHAPES: dict[str, tuple[Draw, bool]] = {
    "gaussian": (lambda rng, k, i0: rng.normal(size=k), False),
    "student_t2": (lambda rng, k, i0: rng.standard_t(2, size=k), False),
    "lognormal": (lambda rng, k, i0: rng.lognormal(size=k), False),
    "poisson": (lambda rng, k, i0: rng.poisson(3.0, size=k).astype(float), False),
    "zero_one": (lambda rng, k, i0: (rng.random(k) < 0.3).astype(float), False),
    "zero_one_rare": (lambda rng, k, i0: (rng.random(k) < 0.01).astype(float), False),
    "constant": (lambda rng, k, i0: np.full(k, 7.0), False),
    "categorical_60": (_categorical(np.append(_ZIPF, 0.0)), True),
    "mostly_null": (_nulls(0.9, lambda rng, k, i0: rng.normal(size=k)), False),
    "seasonal": (_seasonal, False),
}

#: shifted streams: name -> (reference draw, draw after the change, categorical?)
SHIFTS: dict[str, tuple[Draw, Draw, bool]] = {
    "mean_0.1sd": (SHAPES["gaussian"][0], lambda rng, k, i0: rng.normal(0.1, 1.0, size=k), False),
    "mean_0.25sd": (SHAPES["gaussian"][0], lambda rng, k, i0: rng.normal(0.25, 1.0, size=k), False),
    "variance_x1.5": (SHAPES["gaussian"][0], lambda rng, k, i0: rng.normal(0.0, np.sqrt(1.5), size=k), False),
    "new_categories_5pct": (SHAPES["categorical_60"][0], _categorical(_new_levels(0.05)), True),
    "missing_1_to_20pct": (_nulls(0.01, SHAPES["gaussian"][0]), _nulls(0.2, SHAPES["gaussian"][0]), False),
}


class Judge:
    """One feature ``x`` judged by a real data-drift detector, fed window counts."""

    def __init__(self, ref: np.ndarray, categorical: bool, settings: DataDriftSettings, *,
                 per_test_alpha: float | None = None, bins: int = 20, min_samples: int = 100) -> None:
        missing = int(np.isnan(ref).sum())
        present = ref[~np.isnan(ref)]
        if categorical:
            prof = profile_categorical("x", [str(int(v)) for v in present], max_categories=50, missing=missing)
        else:
            prof = profile_numeric("x", present, bins=bins, missing=missing)
        self.profile = prof
        self.det = DataDriftDetector({"x": prof}, settings, min_samples=min_samples)
        if per_test_alpha is not None:
            self.det.budget = (per_test_alpha * self.det.calibrated_test_count(), per_test_alpha, ())
        self._index = {c: i for i, c in enumerate(prof.categories)}

    def window(self, values: np.ndarray) -> tuple[bool, tuple[Any, ...]]:
        """Count ``values`` (NaN = missing) into the window, close it: (verdict, rows)."""
        h = self.det.window.hists["x"]
        nan = np.isnan(values)
        present = values[~nan]
        nb = len(h.counts)
        if self.profile.kind == NUMERIC:
            idx = np.searchsorted(np.asarray(self.profile.edges), present, side="right")
            counts = np.bincount(idx, minlength=nb)
            h.sums = np.bincount(idx, weights=present, minlength=nb).tolist()
        else:
            other = nb - 1
            idx = np.array([self._index.get(str(int(v)), other) for v in present], dtype=int)
            counts = np.bincount(idx, minlength=nb)
        h.counts = counts.tolist()
        h.missing = int(nan.sum())
        self.det.window.events = len(values)
        rows = self.det.close_window()
        return self.det.verdicts.get("x", False), rows


def run(draw_ref: Draw, draw_cur: Draw, categorical: bool, *, seed: int, ref_size: int, windows: int,
        window: int = 1000, settings: DataDriftSettings | None = None,
        per_test_alpha: float | None = None, before: int = 0) -> list[bool]:
    """Verdicts of ``before`` windows drawn like the reference, then ``windows`` from ``draw_cur``."""
    rng = np.random.default_rng(seed)
    judge = Judge(draw_ref(rng, ref_size, 0), categorical, settings or DataDriftSettings(),
                  per_test_alpha=per_test_alpha)
    out = []
    for w in range(before + windows):
        draw = draw_ref if w < before else draw_cur
        out.append(judge.window(draw(rng, window, w * window))[0])
    return out
