"""The streams of the detection benchmark (``bench_detection.py``): shapes, shifts, fixed seeds.

Every case is one feature. Its stream is a reference region (the first ``ref_events`` values,
stationary), then evaluated windows of ``window`` values: all stationary for a stationary case;
``prefix`` stationary windows then ``post`` changed ones for a shifted case (the change starts
at a window boundary). Numeric values are float64 with NaN for a missing value; categorical ones
are int codes into ``levels`` with -1 for missing. Each case draws from its own
``numpy.random.default_rng(seed)`` in one pass, so a stream depends only on its seed and the sizes
asked for (not on the other cases); a different ``--events-per-shape`` gives another sample, its
reference included.

>>> c = CASES["gaussian"]
>>> s = c.generate(ref_events=2000, window=1000, windows=3, prefix=0)
>>> s.values.shape, s.change_window
((5000,), None)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

__all__ = ["Case", "Stream", "CASES", "STATIONARY", "SHIFTED", "SEASON_PERIOD", "LONGTAIL_LEVELS"]

#: period of the seasonal case in events: a window of 1,000 holds 4 whole periods, so every
#: window (and the reference) has the same mix of phases
SEASON_PERIOD = 250
#: levels of the long-tail categorical (Zipf-like weights k**-1.1: the rarest few are ~1 per window)
LONGTAIL_LEVELS = 80
_NEW_LEVELS = 5

Gen = Callable[[np.random.Generator, np.ndarray], np.ndarray]  # (rng, event index) -> values


def _longtail_p() -> np.ndarray:
    w = np.arange(1, LONGTAIL_LEVELS + 1, dtype=float) ** -1.1
    return w / w.sum()


def _gauss(rng: np.random.Generator, i: np.ndarray) -> np.ndarray:
    return rng.normal(0.0, 1.0, i.size)


def _nulls(rng: np.random.Generator, x: np.ndarray, rate: float) -> np.ndarray:
    x = x.astype(float)
    x[rng.random(x.size) < rate] = np.nan
    return x


def _longtail(rng: np.random.Generator, i: np.ndarray) -> np.ndarray:
    return rng.choice(LONGTAIL_LEVELS, size=i.size, p=_longtail_p())


def _with_new(rng: np.random.Generator, i: np.ndarray) -> np.ndarray:
    x = _longtail(rng, i)
    new = rng.random(i.size) < 0.05
    x[new] = LONGTAIL_LEVELS + rng.integers(0, _NEW_LEVELS, int(new.sum()))
    return x


STATIONARY_GENS: dict[str, tuple[str, Gen]] = {
    "gaussian": ("numeric", _gauss),
    "student_t2": ("numeric", lambda rng, i: rng.standard_t(2, i.size)),
    "lognormal": ("numeric", lambda rng, i: rng.lognormal(0.0, 1.0, i.size)),
    "poisson": ("numeric", lambda rng, i: rng.poisson(3.0, i.size).astype(float)),
    "binary": ("numeric", lambda rng, i: (rng.random(i.size) < 0.3).astype(float)),
    "constant": ("numeric", lambda rng, i: np.full(i.size, 5.0)),
    "longtail_categorical": ("categorical", _longtail),
    "mostly_null": ("numeric", lambda rng, i: _nulls(rng, rng.normal(0.0, 1.0, i.size), 0.9)),
    "seasonal": ("numeric", lambda rng, i: 2.0 * np.sin(2 * np.pi * i / SEASON_PERIOD) + rng.normal(0.0, 1.0, i.size)),
}

# name -> (base shape, kind, generator after the change)
SHIFTED_GENS: dict[str, tuple[str, str, Gen]] = {
    "mean_+0.1sd": ("gaussian", "numeric", lambda rng, i: rng.normal(0.1, 1.0, i.size)),
    "mean_+0.25sd": ("gaussian", "numeric", lambda rng, i: rng.normal(0.25, 1.0, i.size)),
    "variance_x1.5": ("gaussian", "numeric", lambda rng, i: rng.normal(0.0, np.sqrt(1.5), i.size)),
    "new_categories_5pct": ("longtail_categorical", "categorical", _with_new),
    "missing_1pct_to_20pct": ("missing_1pct", "numeric",
                              lambda rng, i: _nulls(rng, rng.normal(0.0, 1.0, i.size), 0.20)),
}
_BASES: dict[str, Gen] = {**{k: g for k, (_, g) in STATIONARY_GENS.items()},
                          "missing_1pct": lambda rng, i: _nulls(rng, rng.normal(0.0, 1.0, i.size), 0.01)}


@dataclasses.dataclass(frozen=True)
class Stream:
    """One generated case: ``values`` (reference region first), where windows start, the change."""

    case: str
    kind: str  # "numeric" or "categorical"
    values: np.ndarray
    ref_events: int
    window: int
    change_window: int | None  # index of the first changed evaluated window, None if stationary
    levels: tuple[str, ...] = ()

    @property
    def reference(self) -> np.ndarray:
        return self.values[: self.ref_events]

    @property
    def windows(self) -> np.ndarray:
        """Evaluated windows as a (n_windows, window) array."""
        return self.values[self.ref_events:].reshape(-1, self.window)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str
    base: Gen
    after: Gen | None
    seed: int
    description: str

    @property
    def shifted(self) -> bool:
        return self.after is not None

    def generate(self, *, ref_events: int, window: int, windows: int, prefix: int) -> Stream:
        """``ref_events`` reference values, then ``windows`` windows; a shifted case changes after
        ``prefix`` of them (a stationary one ignores ``prefix``)."""
        if ref_events % window:
            raise ValueError(f"ref_events {ref_events} is not a multiple of the window {window}")
        rng = np.random.default_rng(self.seed)
        n = ref_events + windows * window
        cut = n if self.after is None else ref_events + prefix * window
        idx = np.arange(n)
        parts = [self.base(rng, idx[:cut])]
        if cut < n:
            parts.append(self.after(rng, idx[cut:]))  # type: ignore[misc]
        values = np.concatenate(parts)
        levels: tuple[str, ...] = ()
        if self.kind == "categorical":
            levels = tuple(f"c{k:02d}" for k in range(LONGTAIL_LEVELS)) + tuple(f"new{k}" for k in range(_NEW_LEVELS))
            values = values.astype(np.int64)
        return Stream(self.name, self.kind, values, ref_events, window,
                      None if self.after is None else prefix, levels)


_DESCRIPTIONS = {
    "gaussian": "N(0, 1)",
    "student_t2": "Student-t, 2 dof",
    "lognormal": "log-normal(0, 1)",
    "poisson": "Poisson(3), integers",
    "binary": "0/1, P(1) = 0.3",
    "constant": "always 5.0",
    "longtail_categorical": f"{LONGTAIL_LEVELS} levels, weights k^-1.1",
    "mostly_null": "N(0, 1), 90 % null",
    "seasonal": f"2 sin(2 pi t / {SEASON_PERIOD}) + N(0, 1): 4 whole periods per 1,000-event window",
    "mean_+0.1sd": "N(0, 1) -> N(0.1, 1)",
    "mean_+0.25sd": "N(0, 1) -> N(0.25, 1)",
    "variance_x1.5": "N(0, 1) -> N(0, 1.5)",
    "new_categories_5pct": f"the {LONGTAIL_LEVELS}-level long tail -> 5 % of events in {_NEW_LEVELS} new levels",
    "missing_1pct_to_20pct": "N(0, 1) with 1 % null -> 20 % null",
}

CASES: dict[str, Case] = {}
for _seed, (_name, (_kind, _gen)) in enumerate(STATIONARY_GENS.items(), start=101):
    CASES[_name] = Case(_name, _kind, _gen, None, _seed, _DESCRIPTIONS[_name])
for _seed, (_name, (_base, _kind, _gen)) in enumerate(SHIFTED_GENS.items(), start=201):
    CASES[_name] = Case(_name, _kind, _BASES[_base], _gen, _seed, _DESCRIPTIONS[_name])

STATIONARY = tuple(STATIONARY_GENS)
SHIFTED = tuple(SHIFTED_GENS)
