"""Rule ``metric`` of CBPE's calibrator choice: the kind whose probabilities estimate the metrics best.

The Brier rule scores a calibrator row by row; CBPE uses it through sums over a window (the
expected confusion matrix, the expected ROC curve). Those differ: a map fitted on a few thousand
labels that is a little flatter than the truth costs next to nothing in Brier score, yet lowers
every window's estimated ROC AUC by the same amount (the synthetic binary benchmark: Platt picked
by Brier, AUC error .0109 against .0080 for the raw scores). So this rule scores what CBPE is used
for. Each kind's out-of-fold probabilities of the reference (every row calibrated by a map fitted
without it, :func:`driftline.detectors.estimation_calib.held_out`) estimate accuracy, F1 and ROC
AUC on resamples of the reference, and each estimate is compared with the resample's realised
value from its labels. The resamples mimic the windows CBPE will see: uniform ones, and ones
weighted by ``exp(+-beta * z)`` on a standardised score (the positive class's log-odds, or each
class's score and the model's confidence for a multiclass model): a shift towards confident or
doubtful rows, the shift that moves the metrics. :func:`pick_by_metrics` walks the kinds from
the simplest and moves to a more flexible one when it lowers the mean absolute error (over the
resamples and the three metrics) by more than ``margin`` standard errors (rule ``metric``:
margin 0, the lowest error; ``metric_se``: 1).

What it cannot do (bench/README.md, "The calibrator"): it judges the kinds by the reference's own
labels. On the binary benchmark's reference those labels favour a flatter map (Platt and isotonic
beat the raw scores by 1.5 standard errors there), while the windows' labels favour the raw
scores; fitted on 200,000 reference rows, identity, Platt and isotonic all have an AUC error of
.0079-.0080 on the windows. No rule that sees only the reference tells that sample's noise from breast_cancer's
real miscalibration (1.4 standard errors on 284 rows), so neither rule is the default.

Every kind sees the same resamples and labels, so the labels' own noise is common to all of them
and the comparison is paired. Cost at fit time: ``RESAMPLES`` estimates per kind and direction,
0.5 s CPU on a binary reference of 5,000 rows, 2 s on a 3-class one, 5 s on digits' 898 rows and
10 classes (11 directions): about what the default rule's fit costs again.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.special import logit

from driftline.detectors.estimation_metrics import expected_metrics

__all__ = ["metric_errors", "pick_by_metrics", "SCORED", "RESAMPLES", "BETA", "ROWS", "MARGIN"]

SCORED = ("accuracy", "f1", "roc_auc")  # what the benchmark grades; precision / recall follow F1
RESAMPLES = 60  # per direction of shift (and as many uniform ones)
BETA = 1.0  # strength of a shifted resample: weights exp(+-BETA * z), z a standardised score
ROWS = 2000  # rows per resample (at most the reference's)
MARGIN = 1.0  # standard errors of the gain a more flexible kind must beat
_EPS = 1e-6


def _directions(p: np.ndarray) -> list[np.ndarray]:
    """The standardised scores a resample is shifted along."""
    cols = [logit(np.clip(p[:, 1], _EPS, 1 - _EPS))] if p.shape[1] == 2 else [*p.T, p.max(axis=1)]
    out = []
    for z in cols:
        sd = float(np.std(z))
        if sd > 0:
            out.append((z - z.mean()) / sd)
    return out


def _resamples(p: np.ndarray, seed: int) -> list[np.ndarray]:
    n = len(p)
    rng = np.random.default_rng(seed)
    m = min(n, ROWS)
    draws = [rng.integers(0, n, m) for _ in range(RESAMPLES)]
    for z in _directions(p):
        for sign in (1.0, -1.0):
            w = np.exp(sign * BETA * z)
            w /= w.sum()
            draws += [rng.choice(n, size=m, replace=True, p=w) for _ in range(RESAMPLES // 2)]
    return draws


def metric_errors(p: np.ndarray, codes: np.ndarray, q: Mapping[str, np.ndarray], *,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Per kind, the (resamples, metrics) absolute errors of CBPE's estimate from the kind's
    out-of-fold probabilities ``q[kind]`` against the realised metric (NaN where undefined)."""
    # estimation.py imports the calibrators, which import this module: imported at the call
    from driftline.detectors.estimation import realised_from_codes

    out: dict[str, list] = {kind: [] for kind in q}
    for idx in _resamples(p, seed):
        ps, ys = p[idx], codes[idx]
        r = realised_from_codes(ps, ys)
        real = np.array([r[m] for m in SCORED])
        for kind, qk in q.items():
            est = expected_metrics(ps, qk[idx])[0]
            out[kind].append(np.abs(np.array([est[m] for m in SCORED]) - real))
    return {kind: np.asarray(v) for kind, v in out.items()}


def pick_by_metrics(p: np.ndarray, codes: np.ndarray, q: Mapping[str, np.ndarray], order: tuple[str, ...], *,
                    seed: int = 0, margin: float = MARGIN) -> str:
    """The simplest kind of ``order`` that no later kind beats by more than ``margin`` standard
    errors of the paired gain in mean absolute metric-estimation error (see the module docstring).

    Walked in ``order``: the kept kind is replaced by a later one only when the later one lowers the
    error by more than ``margin`` times the gain's standard error. That error is the spread of the
    per-resample gain over the resamples, scaled from ``m`` to the reference's ``n`` rows
    (``sqrt(m / n)``): how much the gain would move with another reference of this size.
    """
    errs = metric_errors(p, codes, {k: q[k] for k in order}, seed=seed)
    ok = np.all([np.isfinite(e) for e in errs.values()], axis=0)  # the cells every kind defines
    per = {k: np.where(ok, e, 0.0).sum(axis=1) / np.maximum(ok.sum(axis=1), 1) for k, e in errs.items()}
    scale = np.sqrt(min(len(p), ROWS) / len(p))
    kept = order[0]
    for k in order[1:]:
        d = per[kept] - per[k]
        if float(d.mean()) > margin * float(d.std(ddof=1)) * scale:
            kept = k
    return kept
