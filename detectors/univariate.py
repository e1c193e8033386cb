"""Two-sample statistics computed from binned counts (reference bins vs. window counts).

All functions take plain sequences of counts in the same bins and run in time proportional
to the number of bins. Numeric: PSI, Kolmogorov–Smirnov (on bin edges, a lower bound of the raw
statistic, with its asymptotic p-value), Wasserstein-1 normalised by the reference standard
deviation (bin means as point masses), Jensen–Shannon distance. Categorical: chi-squared test of
homogeneity, Jensen–Shannon, PSI. Unseen categories sit in the last bin of both sides.

>>> round(psi([50, 50], [50, 50]), 6)
0.0
>>> js_distance([1, 0], [0, 1])
1.0
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = [
    "NUMERIC_TESTS", "CATEGORICAL_TESTS", "P_VALUE_TESTS", "psi", "js_distance",
    "ks_binned", "wasserstein_binned", "chi2_homogeneity", "psi_batch", "js_distance_batch",
    "wasserstein_binned_batch",
]

NUMERIC_TESTS = ("psi", "ks", "wasserstein", "jensen_shannon")
CATEGORICAL_TESTS = ("chi2", "jensen_shannon", "psi")
P_VALUE_TESTS = ("ks", "chi2")

_EPS = 1e-4  # PSI smoothing: an empty bin on one side must not give log(0)


def _proportions(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total for c in counts] if total else [0.0] * len(counts)


def psi(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Population stability index: sum (c - r) ln(c / r), proportions floored at 1e-4."""
    p, q = _proportions(ref), _proportions(cur)
    out = 0.0
    for r, c in zip(p, q):
        if r == 0.0 and c == 0.0:
            continue
        r, c = max(r, _EPS), max(c, _EPS)
        out += (c - r) * math.log(c / r)
    return out


def js_distance(ref: Sequence[float], cur: Sequence[float]) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2, in [0, 1])."""
    p, q = _proportions(ref), _proportions(cur)
    div = 0.0
    for a, b in zip(p, q):
        m = 0.5 * (a + b)
        if a > 0.0:
            div += 0.5 * a * math.log2(a / m)
        if b > 0.0:
            div += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(0.0, min(1.0, div)))


def ks_binned(ref: Sequence[int], cur: Sequence[int]) -> tuple[float, float]:
    """Largest gap between the two CDFs at the bin edges, and its asymptotic p-value."""
    from scipy.special import kolmogorov  # = kstwobign.sf, without the distribution overhead

    n, m = float(sum(ref)), float(sum(cur))
    if n == 0 or m == 0:
        return 0.0, 1.0
    fr = fc = d = 0.0
    for r, c in zip(ref, cur):
        fr += r / n
        fc += c / m
        d = max(d, abs(fr - fc))
    en = math.sqrt(n * m / (n + m))
    # Stephens' small-sample correction of the Kolmogorov limit distribution.
    p = float(kolmogorov((en + 0.12 + 0.11 / en) * d))
    return d, min(1.0, max(0.0, p))


def wasserstein_binned(ref_counts: Sequence[int], ref_sums: Sequence[float],
                       cur_counts: Sequence[int], cur_sums: Sequence[float], scale: float) -> float:
    """Wasserstein-1 between bin-mean point masses, divided by ``scale`` (reference std)."""
    n, m = float(sum(ref_counts)), float(sum(cur_counts))
    if n == 0 or m == 0:
        return 0.0
    points: list[tuple[float, float, float]] = []
    for c, s in zip(ref_counts, ref_sums):
        if c:
            points.append((s / c, c / n, 0.0))
    for c, s in zip(cur_counts, cur_sums):
        if c:
            points.append((s / c, 0.0, c / m))
    points.sort()
    dist = fr = fc = 0.0
    for (x, wr, wc), nxt in zip(points, points[1:]):
        fr += wr
        fc += wc
        dist += abs(fr - fc) * (nxt[0] - x)
    return dist / scale if scale > 0 else (math.inf if dist > 0 else 0.0)


def chi2_homogeneity(ref: Sequence[int], cur: Sequence[int]) -> tuple[float, float]:
    """Chi-squared test that both samples come from one categorical distribution."""
    from scipy.special import chdtrc  # = chi2.sf

    n, m = float(sum(ref)), float(sum(cur))
    cols = [(r, c) for r, c in zip(ref, cur) if r + c > 0]
    if n == 0 or m == 0 or len(cols) < 2:
        return 0.0, 1.0
    total = n + m
    stat = 0.0
    for r, c in cols:
        col = r + c
        er, ec = n * col / total, m * col / total
        stat += (r - er) ** 2 / er + (c - ec) ** 2 / ec
    return stat, float(chdtrc(len(cols) - 1, stat))


# -- the same statistics for every row of (rows x bins) matrices -------------------------------------
# A window of a 1,000-feature model computes ~3,000 of them. Terms are added in the scalar functions'
# order (a cumulative sum, not numpy's pairwise one), so the only difference is numpy's log against
# the math module's: at most a few units in the last place.

def _proportions_batch(counts: Any) -> Any:
    import numpy as np

    total = counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, counts / total, 0.0)


def _in_order(terms: Any) -> Any:
    """Row sums of ``terms`` added left to right, as a Python loop adds them."""
    import numpy as np

    return np.cumsum(terms, 1)[:, -1] if terms.shape[1] else np.zeros(len(terms))


def psi_batch(ref: Any, cur: Any) -> Any:
    """:func:`psi` of each row."""
    import numpy as np

    p, q = _proportions_batch(np.asarray(ref, dtype=float)), _proportions_batch(np.asarray(cur, dtype=float))
    r, c = np.maximum(p, _EPS), np.maximum(q, _EPS)
    return _in_order(np.where((p == 0.0) & (q == 0.0), 0.0, (c - r) * np.log(c / r)))


def js_distance_batch(ref: Any, cur: Any) -> Any:
    """:func:`js_distance` of each row."""
    import numpy as np

    p, q = _proportions_batch(np.asarray(ref, dtype=float)), _proportions_batch(np.asarray(cur, dtype=float))
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.empty((len(p), 2 * p.shape[1]))
        terms[:, 0::2] = np.where(p > 0.0, 0.5 * p * np.log2(p / m), 0.0)
        terms[:, 1::2] = np.where(q > 0.0, 0.5 * q * np.log2(q / m), 0.0)
    return np.sqrt(np.maximum(0.0, np.minimum(1.0, _in_order(terms))))


def wasserstein_binned_batch(ref_counts: Any, ref_sums: Any, cur_counts: Any, cur_sums: Any, scale: Any) -> Any:
    """:func:`wasserstein_binned` of each row (``scale`` one per row)."""
    import numpy as np

    rc, rs = np.asarray(ref_counts, dtype=float), np.asarray(ref_sums, dtype=float)
    cc, cs = np.asarray(cur_counts, dtype=float), np.asarray(cur_sums, dtype=float)
    n, m = rc.sum(1, keepdims=True), cc.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Bin means as points (an empty bin: none, sorted last); reference points, then the window's.
        x = np.concatenate([np.where(rc > 0, rs / rc, np.inf), np.where(cc > 0, cs / cc, np.inf)], 1)
        wr = np.concatenate([rc / n, np.zeros_like(cc)], 1)
        wc = np.concatenate([np.zeros_like(rc), cc / m], 1)
        order = np.argsort(x, axis=1, kind="stable")
        x, wr, wc = (np.take_along_axis(a, order, 1) for a in (x, wr, wc))
        gap = np.abs(np.cumsum(wr, 1) - np.cumsum(wc, 1))[:, :-1] * (x[:, 1:] - x[:, :-1])
        dist = _in_order(np.where(np.isfinite(gap), gap, 0.0))
        scale = np.asarray(scale, dtype=float)
        out = np.where(scale > 0, dist / scale, np.where(dist > 0, np.inf, 0.0))
    return np.where((n[:, 0] > 0) & (m[:, 0] > 0), out, 0.0)
