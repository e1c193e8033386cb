"""Corrections for testing many features at once.

With 50 features tested at alpha = 0.05, about 2.5 would "drift" by chance every window. The
Benjamini–Hochberg procedure controls the false discovery rate; Bonferroni the family-wise
error rate (stricter, fewer alarms, later detection).

>>> adjust_p_values([0.01, 0.04, 0.03], "bonferroni")
(0.03, 0.12, 0.09)
>>> [round(p, 3) for p in adjust_p_values([0.01, 0.04, 0.03], "bh")]
[0.03, 0.04, 0.04]
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["METHODS", "adjust_p_values"]

METHODS = ("bh", "bonferroni", "none")


def adjust_p_values(p_values: Sequence[float], method: str) -> tuple[float, ...]:
    """Adjusted p-values in input order; compare each to alpha."""
    m = len(p_values)
    if m == 0 or method == "none":
        return tuple(float(p) for p in p_values)
    if method == "bonferroni":
        return tuple(min(1.0, float(p) * m) for p in p_values)
    if method != "bh":
        raise ValueError(f"unknown correction {method!r}; expected one of {METHODS}")
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 1.0
    # Step-up: walk from the largest p-value down, keeping the running minimum monotone.
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, float(p_values[i]) * m / rank)
        adjusted[i] = min(1.0, running)
    return tuple(adjusted)
