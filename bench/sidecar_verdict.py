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
"""

from __future__ import annotations

from math import comb


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


def verdict(xs: list[float], target: float, confidence: float = 0.95) -> str:
    lo, hi, cover = median_interval(xs, confidence)
    if cover < confidence or lo != lo:
        return "undecided at this N"
    if hi <= target:
        return "met"
    if lo > target:
        return "not met"
    return "undecided at this N"


def rounds_for_decision(confidence: float = 0.95) -> int:
    """The fewest rounds whose range reaches ``confidence`` (below it no verdict is possible)."""
    n = 1
    while 1 - 2 * _below(n, 1) < confidence:
        n += 1
    return n
