"""How sure a median over rounds is: an exact, distribution-free interval for it, and the verdict.

``bench_sidecar.py`` judges "events on add <= 20 % to the sidecar's own p99" by the median of the
per-round ratios. With 7 rounds that spread by hundreds of points a median of +21 % says little on
its own. The interval here is the sign-test (order-statistic) interval for the population median:
with ``n`` rounds sorted, ``[x(k), x(n+1-k)]`` covers the true median with probability
``1 - 2 P(Binomial(n, 1/2) < k)``, whatever the rounds' distribution, provided rounds are
independent draws of the same thing (which interleaved, order-alternating rounds approach). ``k``
is the largest that keeps that coverage at or above the confidence asked for.

The verdict: **met** when the whole interval is at or below the target, **not met** when it is
wholly above, else **undecided at this N** (more rounds, or a quieter machine, would decide).

>>> lo, hi, cover = median_interval([0.3, -0.1, 0.2, 0.5, 0.1, 0.25, 0.0], 0.95)
>>> lo, hi, round(cover, 3)
(-0.1, 0.5, 0.984)
>>> verdict([0.3, -0.1, 0.2, 0.5, 0.1, 0.25, 0.0], 0.20)
'undecided at this N'
>>> verdict([0.01, -0.1, 0.05, 0.12, 0.1, 0.15, 0.0], 0.20)
'met'
>>> rounds_for_decision(0.95)
6

The per-round ratio is a ratio of two differences of p99s, each from a few thousand requests, and
in a round where the sidecar without events happened to add little it explodes (rounds have spread
from -94 to +464 %). :func:`pooled_interval` judges the same figure from every round's requests
pooled -- the sidecar's p99 over the whole run with events on against off -- with a percentile
interval from a bootstrap that resamples whole rounds (the independent units: requests within one
round share its machine state), and :func:`interval_verdict` reads it the same way as above.
"""

from __future__ import annotations

import random
from math import comb
from typing import Callable, Mapping, Sequence


def _below(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) < k)."""
    return sum(comb(n, i) for i in range(k)) / 2**n


def median_interval(xs: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the sign-test interval for the median of ``xs``; coverage is exact.

    With too few values for ``confidence`` (fewer than 6 at 95 %), the widest interval there is --
    the range -- and its own, lower, coverage."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan"), float("nan"), 0.0
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _below(n, k + 1) >= confidence:
        k += 1
    return s[k - 1], s[n - k], 1 - 2 * _below(n, k)


def _read(lo: float, hi: float, target: float) -> str:
    """An interval against an upper bound: wholly at or below it, wholly above, or across it."""
    if hi <= target:
        return "met"
    if lo > target:
        return "not met"
    return "undecided at this N"


def verdict(xs: list[float], target: float, confidence: float = 0.95) -> str:
    lo, hi, cover = median_interval(xs, confidence)
    if cover < confidence or lo != lo:
        return "undecided at this N"
    return _read(lo, hi, target)


def rounds_for_decision(confidence: float = 0.95) -> int:
    """The fewest rounds whose range reaches ``confidence`` (below it no verdict is possible)."""
    n = 1
    while 1 - 2 * _below(n, 1) < confidence:
        n += 1
    return n


def pooled_interval(rounds: Mapping[str, Sequence[Sequence[float]]],
                    cost: Callable[[Mapping[str, float]], float], *, q: float = 0.99,
                    confidence: float = 0.95, resamples: int = 1000,
                    seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of ``cost`` over the ``q`` quantiles of every round's values pooled.

    ``rounds`` maps each target to its values per round (the same number of rounds each); ``cost``
    takes the targets' pooled quantiles. The interval is the bootstrap's percentile interval: round
    indices drawn with replacement ``resamples`` times, every target pooled over the same draw.
    Resamples whose cost is undefined (NaN) count as beyond either end, so they widen the interval
    instead of being dropped."""
    names = list(rounds)
    n = len(rounds[names[0]])
    if n == 0 or any(len(rounds[k]) != n for k in names):
        raise ValueError("every target needs the same, non-zero number of rounds")

    import numpy as np  # the server's venv, which runs the benchmarks, has it

    arrays = {k: [np.asarray(r, dtype=float) for r in rounds[k]] for k in names}

    def at(draw: Sequence[int]) -> float:
        out = {}
        for k in names:
            pooled = np.concatenate([arrays[k][i] for i in draw])
            j = min(len(pooled) - 1, int(len(pooled) * q))  # bench_sidecar.p99's order statistic
            out[k] = float(np.partition(pooled, j)[j])
        return cost(out)

    estimate = at(range(n))
    rng = random.Random(seed)
    costs = [at([rng.randrange(n) for _ in range(n)]) for _ in range(resamples)]
    nan = sum(c != c for c in costs)
    finite = sorted(c for c in costs if c == c)
    tail = (1 - confidence) / 2
    k_lo, k_hi = int(tail * resamples), int((1 - tail) * resamples) - 1
    # NaNs sit at both ends at once: the interval opens to infinity when they reach a tail
    lo = float("-inf") if k_lo < nan else finite[k_lo - nan]
    hi = float("inf") if k_hi >= len(finite) else finite[k_hi]
    return estimate, lo, hi


#: fewer rounds than this give no bootstrap verdict: with a handful of rounds the resamples are few
#: distinct draws and the percentile interval is far too narrow
POOLED_MIN_ROUNDS = 10


def interval_verdict(lo: float, hi: float, target: float, rounds: int) -> str:
    """``met`` when ``[lo, hi]`` lies at or below ``target``, ``not met`` when wholly above it
    (from :data:`POOLED_MIN_ROUNDS` rounds on)."""
    if rounds < POOLED_MIN_ROUNDS:
        return "undecided at this N"
    return _read(lo, hi, target)
