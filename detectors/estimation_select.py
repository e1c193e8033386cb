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
doubtful rows, the shift that moves the metrics. The kind with the lowest mean absolute error
(over the resamples and the three metrics) is kept; on a tie the simpler kind.

Every kind sees the same resamples and labels, so the labels' own noise is common to all of them
and the comparison is paired. Cost: ``RESAMPLES`` estimates per kind at fit time (tens of ms).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.special import logit

from driftline.detectors.estimation_metrics import auc_from_ranks, expected_metrics, nanmean_rows, ratios, tie_ranks

__all__ = ["metric_errors", "pick_by_metrics", "SCORED", "RESAMPLES", "BETA"]

SCORED = ("accuracy", "f1", "roc_auc")  # what the benchmark grades; precision / recall follow F1
RESAMPLES = 60  # per direction of shift (and as many uniform ones)
BETA = 1.0  # strength of a shifted resample: weights exp(+-BETA * z), z a standardised score
ROWS = 1000  # rows per resample (at most the reference's)
_EPS = 1e-6


def _realised(p: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Accuracy, F1, ROC AUC of the rows (binary: the positive class; else macro means)."""
    n, k = p.shape
    pred = p.argmax(axis=1)
    eye = np.eye(k, dtype=bool)
    yt, yp = eye[codes], eye[pred]
    tp = (yt & yp).sum(0).astype(float)
    _, _, f1 = ratios(tp, yp.sum(0) - tp, yt.sum(0) - tp)
    cols = [1] if k == 2 else range(k)
    auc = np.array([auc_from_ranks(tie_ranks(p[:, c]), yt[:, c]) for c in cols])
    if k == 2:
        return np.array([np.mean(pred == codes), f1[1], auc[0]])
    return np.array([np.mean(pred == codes), float(nanmean_rows(f1)), float(nanmean_rows(auc))])


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
    out: dict[str, list] = {kind: [] for kind in q}
    for idx in _resamples(p, seed):
        ps, ys = p[idx], codes[idx]
        real = _realised(ps, ys)
        for kind, qk in q.items():
            est = expected_metrics(ps, qk[idx])[0]
            out[kind].append(np.abs(np.array([est[m] for m in SCORED]) - real))
    return {kind: np.asarray(v) for kind, v in out.items()}


def pick_by_metrics(p: np.ndarray, codes: np.ndarray, q: Mapping[str, np.ndarray], order: tuple[str, ...], *,
                    seed: int = 0) -> str:
    """The kind of ``order`` with the lowest mean absolute metric-estimation error (the first of
    ``order`` on a tie)."""
    errs = metric_errors(p, codes, {k: q[k] for k in order}, seed=seed)
    ok = np.all([np.isfinite(e) for e in errs.values()], axis=0)  # the cells every kind defines
    score = {k: float(e[ok].mean()) if ok.any() else 0.0 for k, e in errs.items()}
    return min(order, key=lambda k: (round(score[k], 12), order.index(k)))
