"""Two-sample tests on binned counts whose p-values stay valid far in the tail.

The calibrated verdict (:mod:`~driftline.detectors.calibration`) compares p-values with per-test
levels of 1e-5 and below, where a normal approximation of a skewed statistic is off by orders of
magnitude (a 0/1 feature with 1 % ones, a rare missing value, a constant feature with a few
outliers). Every test here reads only the reference's and the window's counts in the same bins,
so it costs O(bins) at window close.

* :func:`rank_tests`: Wilcoxon–Mann–Whitney (location) and Mood (scale) as linear rank
  statistics, each bin a tie block with mid-rank scores and the exact tie-corrected permutation
  variance. Beyond ``|z| > 2.58`` the p-value is a Lugannani–Rice saddlepoint tail of the
  window-minus-reference score mean (its first three cumulants match the permutation
  distribution's), with a half-step continuity correction, so skewed score distributions keep
  honest tails.
* :func:`ks_grouped`: largest gap of the binned CDFs, asymptotic Kolmogorov p-value at
  ``n_eff = n m / (n + m)`` (conservative for grouped data).
* :func:`chi2_merged`: chi-squared homogeneity with cells of expected window count below 5
  merged into one (valid tails on long-tailed categoricals).
* :func:`rate_test`: a count in the window vs the reference (missing values), exact conditional
  binomial test.

>>> z, p, _, _ = rank_tests([100] * 10, [10] * 10)
>>> round(z, 6), round(p, 6)
(0.0, 1.0)
>>> rank_tests([100] * 10, [0] * 5 + [20] * 5)[1] < 1e-6
True
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["rank_tests", "rank_tests_batch", "ks_grouped", "ks_grouped_batch", "chi2_merged", "rate_test",
           "rate_test_batch", "saddlepoint_tail"]

_SQRT2 = math.sqrt(2.0)
# Below this |z| the normal tail is used as is (p > 0.01, far above any per-test level): the
# saddlepoint is computed only where a decision can be at stake.
_SADDLE_Z = 2.58
_MIN_EXPECTED = 5.0


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / _SQRT2)


def _cgf(s: float, scores: Sequence[float], weights: Sequence[float]) -> tuple[float, float, float]:
    """K(s), K'(s), K''(s) of the distribution putting ``weights`` on ``scores`` (shifted exp)."""
    top = max(s * a for a in scores)
    e = [w * math.exp(s * a - top) for a, w in zip(scores, weights)]
    z = sum(e)
    m1 = sum(x * a for x, a in zip(e, scores)) / z
    m2 = sum(x * a * a for x, a in zip(e, scores)) / z
    return top + math.log(z), m1, max(m2 - m1 * m1, 0.0)


def saddlepoint_tail(d: float, scores: Sequence[float], weights: Sequence[float], n: int, m: int) -> float:
    """P(D >= d) for D = mean of ``m`` draws - mean of ``n`` draws from (scores, weights).

    ``scores`` must be centred (weighted mean 0) and ``d > 0``. Lugannani–Rice on
    K_D(t) = m K(t/m) + n K(-t/n); the saddlepoint t is found by safeguarded Newton.
    """
    def kd(t: float) -> tuple[float, float, float]:
        k1, d1, s1 = _cgf(t / m, scores, weights)
        k2, d2, s2 = _cgf(-t / n, scores, weights)
        return m * k1 + n * k2, d1 - d2, s1 / m + s2 / n

    hi_support = max(a for a, w in zip(scores, weights) if w > 0) - min(a for a, w in zip(scores, weights) if w > 0)
    if d >= hi_support:
        return 0.0
    lo, hi = 0.0, 1.0
    while kd(hi)[1] < d:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            return 0.0
    t = 0.5 * (lo + hi)
    for _ in range(100):
        k, k1, k2 = kd(t)
        if k1 < d:
            lo = t
        else:
            hi = t
        step = (k1 - d) / k2 if k2 > 0 else math.inf
        nt = t - step
        t = nt if lo < nt < hi else 0.5 * (lo + hi)
        if abs(step) < 1e-10 * max(1.0, t) or hi - lo < 1e-12 * max(1.0, hi):
            break
    k, k1, k2 = kd(t)
    w2 = 2.0 * (t * d - k)
    if w2 <= 0 or k2 <= 0:
        return 1.0
    w = math.sqrt(w2)
    u = t * math.sqrt(k2)
    if u < 1e-8:
        return _normal_sf(w)
    phi = math.exp(-0.5 * w2) / math.sqrt(2 * math.pi)
    return min(1.0, max(0.0, _normal_sf(w) + phi * (1.0 / u - 1.0 / w)))


def rank_tests(ref: Sequence[int], cur: Sequence[int]) -> tuple[float, float, float, float]:
    """(z, p) of Wilcoxon–Mann–Whitney then (z, p) of Mood's scale test; bins are tie blocks.

    Positive WMW z: the window sits higher; positive Mood z: the window is more spread out.
    """
    z1, p1, z2, p2 = rank_tests_batch([list(ref)], [list(cur)])
    return float(z1[0]), float(p1[0]), float(z2[0]), float(p2[0])


def rank_tests_batch(ref: Any, cur: Any) -> tuple[Any, Any, Any, Any]:
    """:func:`rank_tests` for every row of two (rows x bins) count matrices at once (numpy).

    Rows may have different bin counts padded with zeros (an empty bin carries no weight).
    Returns four arrays: WMW z, WMW p, Mood z, Mood p.
    """
    import numpy as np
    from scipy.special import ndtr

    r = np.asarray(ref, dtype=float)
    c = np.asarray(cur, dtype=float)
    t = r + c
    n, m = r.sum(1), c.sum(1)
    total = n + m
    below = np.cumsum(t, 1) - t
    mid = below + (t + 1.0) / 2.0
    centre = ((total + 1.0) / 2.0)[:, None]
    mood = (mid - centre) ** 2 + (t * t - 1.0) / 12.0
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = n * m / (total * (total - 1.0))
        for a in (mid, mood):
            abar = (a * t).sum(1) / total
            ss = (t * (a - abar[:, None]) ** 2).sum(1)
            var = factor * ss
            ok = (n > 0) & (m > 0) & (var > 1e-12 * np.maximum(1.0, ss))
            z = np.where(ok, ((a * c).sum(1) - m * abar) / np.sqrt(np.where(ok, var, 1.0)), 0.0)
            p = np.where(ok, 2.0 * ndtr(-np.abs(z)), 1.0)
            for i in np.flatnonzero(ok & (np.abs(z) > _SADDLE_Z)):
                p[i] = _saddle_p(r[i], c[i], a[i], float(z[i]))
            out += [z, p]
    return out[0], out[1], out[2], out[3]


def _saddle_p(ref: Any, cur: Any, scores: Any, z: float) -> float:
    """Two-sided saddlepoint p-value of a linear rank statistic whose normal z is ``z``."""
    blocks = [(float(a), float(rr + cc), float(cc)) for a, rr, cc in zip(scores, ref, cur) if rr + cc]
    n, m = float(sum(ref)), float(sum(cur))
    total = n + m
    abar = sum(a * t for a, t, _ in blocks) / total
    sd = math.sqrt(sum(t * (a - abar) ** 2 for a, t, _ in blocks) / total)
    sign = 1.0 if z > 0 else -1.0
    cs = [sign * (a - abar) / sd for a, _, _ in blocks]
    ws = [t / total for _, t, _ in blocks]
    # D = window mean - reference mean of the (signed, standardised) scores.
    d = (sum(x * cc for x, (_, _, cc) in zip(cs, blocks)) / m
         - sum(x * (t - cc) for x, (_, t, cc) in zip(cs, blocks)) / n)
    distinct = sorted(set(cs))
    step = (distinct[-1] - distinct[0]) / (len(distinct) - 1) if len(distinct) > 1 else 0.0
    # Half a lattice step towards the mean: the tail includes the observed point.
    d -= 0.5 * step * (1.0 / m + 1.0 / n)
    return 1.0 if d <= 0 else min(1.0, 2.0 * saddlepoint_tail(d, cs, ws, int(n), int(m)))


def ks_grouped(ref: Sequence[int], cur: Sequence[int]) -> tuple[float, float]:
    """Largest CDF gap at the bin edges and its asymptotic p-value at n_eff = n m / (n + m)."""
    from scipy.special import kolmogorov

    n, m = float(sum(ref)), float(sum(cur))
    if n == 0 or m == 0:
        return 0.0, 1.0
    fr = fc = d = 0.0
    for r, c in zip(ref, cur):
        fr += r
        fc += c
        d = max(d, abs(fr / n - fc / m))
    return d, min(1.0, float(kolmogorov(math.sqrt(n * m / (n + m)) * d)))


def ks_grouped_batch(ref: Any, cur: Any) -> tuple[Any, Any]:
    """:func:`ks_grouped` for every row of two (rows x bins) count matrices (zero-padded rows are
    fine): the same values to the last bit (the same cumulative sums and divisions, the same
    ``kolmogorov``)."""
    import numpy as np
    from scipy.special import kolmogorov

    r = np.asarray(ref, dtype=float)
    c = np.asarray(cur, dtype=float)
    n, m = r.sum(1), c.sum(1)
    ok = (n > 0) & (m > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(np.cumsum(r, 1) / n[:, None] - np.cumsum(c, 1) / m[:, None])
        d = np.where(ok, gap.max(1, initial=0.0), 0.0)
        p = np.minimum(1.0, kolmogorov(np.sqrt(n * m / (n + m)) * d))
    return d, np.where(ok, p, 1.0)


def chi2_merged(ref: Sequence[int], cur: Sequence[int]) -> tuple[float, float, int]:
    """Chi-squared homogeneity (statistic, p, degrees of freedom); cells whose expected window
    count is under 5 are pooled into one (and that one into the smallest other while still under)."""
    from scipy.special import chdtrc

    n, m = float(sum(ref)), float(sum(cur))
    if n == 0 or m == 0:
        return 0.0, 1.0, 0
    total = n + m
    cells = sorted(((r, c) for r, c in zip(ref, cur) if r + c), key=lambda rc: rc[0] + rc[1])
    small = [rc for rc in cells if m * (rc[0] + rc[1]) / total < _MIN_EXPECTED]
    big = cells[len(small):]
    if small:
        pr, pc = sum(r for r, _ in small), sum(c for _, c in small)
        while big and m * (pr + pc) / total < _MIN_EXPECTED:
            r, c = big.pop(0)
            pr, pc = pr + r, pc + c
        big.append((pr, pc))
    if len(big) < 2:
        return 0.0, 1.0, 0
    stat = 0.0
    for r, c in big:
        col = r + c
        er, ec = n * col / total, m * col / total
        stat += (r - er) ** 2 / er + (c - ec) ** 2 / ec
    return stat, float(chdtrc(len(big) - 1, stat)), len(big) - 1


def rate_test(ref_hits: int, ref_total: int, cur_hits: int, cur_total: int) -> tuple[float, float]:
    """(window rate - reference rate, two-sided exact conditional p) for a count such as missing
    values: given all hits, the window's share is binomial(hits, window share of the events)."""
    from scipy.special import bdtr, bdtrc

    if ref_total <= 0 or cur_total <= 0:
        return 0.0, 1.0
    diff = cur_hits / cur_total - ref_hits / ref_total
    hits = ref_hits + cur_hits
    if hits == 0 or hits == ref_total + cur_total:
        return diff, 1.0
    share = cur_total / (ref_total + cur_total)
    upper = float(bdtrc(cur_hits - 1, hits, share)) if cur_hits > 0 else 1.0  # P(X >= k)
    lower = float(bdtr(cur_hits, hits, share))  # P(X <= k)
    return diff, min(1.0, 2.0 * min(upper, lower))


def rate_test_batch(ref_hits: Any, ref_total: Any, cur_hits: Any, cur_total: Any) -> tuple[Any, Any]:
    """:func:`rate_test` element-wise over integer arrays, with the same values to the last bit."""
    import numpy as np
    from scipy.special import bdtr, bdtrc

    rh, rt = np.asarray(ref_hits, dtype=np.int64), np.asarray(ref_total, dtype=np.int64)
    ch, ct = np.asarray(cur_hits, dtype=np.int64), np.asarray(cur_total, dtype=np.int64)
    ok = (rt > 0) & (ct > 0)
    hits = rh + ch
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(ok, ch / ct - rh / rt, 0.0)
        share = ct / (rt + ct)
        upper = np.where(ch > 0, bdtrc(ch - 1, hits, share), 1.0)  # P(X >= k)
        lower = bdtr(ch, hits, share)  # P(X <= k)
        p = np.minimum(1.0, 2.0 * np.minimum(upper, lower))
    p = np.where(ok & (hits > 0) & (hits < rt + ct), p, 1.0)
    return diff, p
