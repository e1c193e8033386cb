"""CBPE's arithmetic: a window's expected metrics from calibrated probabilities, and their bands.

Given the model's scores ``p`` (n, k), its decision ``pred = argmax p`` and the calibrated
probabilities ``q`` (n, k), the labels of the window are independent categorical draws
``y_i ~ q_i``. Every metric is a smooth function of a few sums over the rows (true positives per
class, true count per class, the rank sum of a class's rows), so:

* the estimate is the metric of the expected sums (NannyML's plug-in: expected confusion matrix,
  ratios of its cells; ROC AUC from the expected true- and false-positive curve);
* its sampling error is the delta method: linearised, the realised metric is a sum of one term
  per row, ``L_i(y_i)``, so its variance is ``sum_i Var_{y_i ~ q_i} L_i(y_i)``, exact for
  accuracy (a Poisson-binomial mean) and first-order for ratios and AUC. That is O(n k) with no
  random draws, where a parametric bootstrap of 200 label draws cost ~50x more;
  :func:`bootstrap_sds` is that bootstrap, kept as the independent check of the closed form;
* the calibrators' own error (:mod:`driftline.detectors.estimation_calib`) adds a variance
  through the same linear terms, which does not shrink with the window.

Binary metrics are those of the positive class (column 1); multiclass ones macro-average the
classes on which the metric is defined (a class nobody predicts has no precision).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy.stats import norm, rankdata

__all__ = ["ratios", "nanmean_rows", "auc_from_ranks", "tie_ranks", "ranks_and_auc", "ranks_and_aucs",
           "expected_metrics", "expected_binary", "bootstrap_sds", "binary_columns", "normal_quantile", "JointSpreads", "METRICS"]

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
Spreads = Sequence["tuple[np.ndarray, np.ndarray] | None"]
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


@functools.lru_cache(maxsize=64)
def normal_quantile(p: float) -> float:
    """The standard normal quantile, cached: scipy's ``ppf`` costs more than a window's estimate."""
    return float(norm.ppf(p))


def ratios(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class (last axis); NaN where undefined (no predicted / true rows)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    return precision, recall, f1


def nanmean_rows(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries; NaN where there is none."""
    ok = np.isfinite(x)
    cnt = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(ok, x, 0.0).sum(axis=-1) / cnt, np.nan)


def summarise(x: np.ndarray, binary: bool) -> np.ndarray:
    """The binary positive class's value, or the macro mean over the defined classes (last axis)."""
    return x[..., 1] if binary else nanmean_rows(x)


def auc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of the rows marked ``positive`` (..., n) against the rest, given the
    scores' tie-averaged ranks; NaN when one side is empty."""
    pos = positive.sum(axis=-1).astype(float)
    neg = positive.shape[-1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive.astype(float) @ ranks - pos * (pos + 1) / 2) / (pos * neg)


def binary_columns(p1: np.ndarray) -> np.ndarray:
    """The (n, 2) rows ``[1 - p1, p1]`` of a binary model's P(classes[1]) (``np.c_`` without its
    index machinery, which costs more than the arithmetic on a window)."""
    out = np.empty((len(p1), 2))
    np.subtract(1.0, p1, out=out[:, 0])
    out[:, 1] = p1
    return out


def _sorted_ties(score: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(the stable ascending order of ``score``, the first sorted position of each distinct
    score or None when no two scores are equal, the tie-averaged ranks 1..n of the rows)."""
    n = len(score)
    order = np.argsort(score, kind="stable")
    s = score[order]
    first = np.empty(n, dtype=bool)  # ascending: the first row of each distinct score
    first[:1] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    if first.all():  # no ties (continuous scores): the i-th sorted row's rank is i + 1, as below
        ranks = np.empty(n)
        ranks[order] = np.arange(1.0, n + 1.0)
        return order, None, ranks
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.empty_like(starts)
    ends[:-1], ends[-1:] = starts[1:], n
    ranks = np.empty(n)
    ranks[order] = ((starts + ends + 1) / 2)[group]
    return order, starts, ranks


def tie_ranks(score: np.ndarray) -> np.ndarray:
    """The tie-averaged ranks 1..n of ``score`` (scipy's ``rankdata``, without its overhead on a
    window: the realised AUC of every window graded)."""
    return _sorted_ties(score)[2]


def _curve(v: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """0, then the running sums of ``v`` per distinct score from the highest down (``starts``
    None: every score distinct, a group of one row each)."""
    c = np.empty(len(v) + 1 if starts is None else len(starts) + 1)
    c[0] = 0.0
    np.cumsum((v if starts is None else np.add.reduceat(v, starts))[::-1], out=c[1:])
    return c


def ranks_and_auc(score: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, float]:
    """One sort of ``score`` gives both its tie-averaged ranks (1..n) and CBPE's ROC AUC: the
    expected true- and false-positive curve when row i is positive with probability ``q[i]``,
    rows ranked by the model's score (ties share one diagonal step)."""
    order, starts, ranks = _sorted_ties(score)
    qs = q[order]
    # the curve from the highest score down: one point per distinct score
    tp = _curve(qs, starts)
    fp = _curve(1.0 - qs, starts)
    if tp[-1] <= 0 or fp[-1] <= 0:
        return ranks, float("nan")
    return ranks, float(_trapezoid(tp / tp[-1], fp / fp[-1]))


def ranks_and_aucs(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ranks_and_auc` of every column at once, from one sort of the (n, k) scores: the
    tie-averaged ranks, and the expected ROC curve with one point per distinct score (a tied group
    is one diagonal step). The curves' running sums are the per-column ones; the area's sum runs in
    another order (equal to ~1e-15)."""
    n, k = p.shape
    order = np.argsort(p, axis=0, kind="stable")
    s = np.take_along_axis(p, order, axis=0)
    at = np.arange(n)[:, None]
    first = np.ones((n, k), dtype=bool)  # ascending: the first row of each distinct score
    np.not_equal(s[1:], s[:-1], out=first[1:])
    last = np.ones((n, k), dtype=bool)
    last[:-1] = first[1:]
    start = np.maximum.accumulate(np.where(first, at, 0), axis=0)
    end = np.minimum.accumulate(np.where(last, at, n)[::-1], axis=0)[::-1]
    ranks = np.empty((n, k))
    np.put_along_axis(ranks, order, (start + end + 2) / 2.0, axis=0)
    qs = np.take_along_axis(q, order, axis=0)
    tp, fp = np.zeros((n + 1, k)), np.zeros((n + 1, k))
    np.cumsum(qs[::-1], axis=0, out=tp[1:])
    np.cumsum((1.0 - qs)[::-1], axis=0, out=fp[1:])
    aucs = np.full(k, np.nan)
    ok = (tp[-1] > 0) & (fp[-1] > 0)
    if ok.any():
        # the curve's points: the top j rows taken, at j = 0, n and between two distinct scores
        keep = np.ones((n + 1, k), dtype=bool)
        keep[1:n] = first[::-1][:-1]  # between descending rows j-1 and j: ascending n-j starts a group
        idx = np.arange(n + 1)[:, None]
        prev = np.empty((n + 1, k), dtype=np.intp)
        prev[0] = 0
        prev[1:] = np.maximum.accumulate(np.where(keep, idx, 0), axis=0)[:-1]
        x, y = fp[:, ok] / fp[-1, ok], tp[:, ok] / tp[-1, ok]
        pk, kp = prev[:, ok], keep[:, ok]
        px, py = np.take_along_axis(x, pk, axis=0), np.take_along_axis(y, pk, axis=0)
        aucs[ok] = np.sum(np.where(kp, (x - px) * (y + py), 0.0)[1:], axis=0) / 2.0
    return ranks, aucs


def _weights(per_class: np.ndarray, binary: bool) -> np.ndarray:
    """How much each class's metric counts in the summary: the positive class, or 1/m over the m
    classes where it is defined."""
    if binary:
        return np.array([0.0, 1.0])
    ok = np.isfinite(per_class)
    return ok / max(1, int(ok.sum()))


def _finite(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)``; ``x`` itself when it is all finite (the usual case: nan_to_num's own
    checks cost more than the arithmetic on a window)."""
    return x if np.isfinite(x).all() else np.nan_to_num(x)


def _variances(q: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """Var of sum_i L_i(y_i) with y_i ~ q_i independent, per metric m: ``terms[m, i, t] = L_i(t)``
    (all metrics in one pass: each sum runs over the same axis as one metric's alone did, so the
    numbers are those of one metric at a time)."""
    x, y = q * terms, q * terms ** 2
    if q.shape[1] == 2:  # binary: the sum over the two labels as one addition (numpy's reduction
        mean, second = x[..., 0] + x[..., 1], y[..., 0] + y[..., 1]  # over so short an axis is slow)
    else:
        mean, second = np.sum(x, axis=2), np.sum(y, axis=2)
    return np.sum(second - mean ** 2, axis=1)


class JointSpreads:
    """A multiclass window's calibrator spreads, all classes at once: every class's calibrator has
    the same number of score bins and bootstrap draws (as :func:`fit_calibrators` makes them), so
    the per-class bin look-ups and ``dev @ bincount`` products of :func:`_calibration_variance` run
    as one ``searchsorted``, one ``bincount`` and one ``einsum`` (the same sums, in another order).

    ``edges`` (k, bins - 1) and ``devs`` (k, draws, bins) per class; ``p`` the window's (n, k)
    scores. :meth:`of` returns None when the calibrators' tables differ in shape or a score or
    edge lies outside [0, 1] (the bins of all classes share one sorted axis, class c's shifted
    by 2c): the per-class path then serves."""

    def __init__(self, idx: np.ndarray, devs: np.ndarray) -> None:
        self.idx, self.devs = idx, devs

    @classmethod
    def of(cls, edges: Sequence[np.ndarray], devs: Sequence[np.ndarray], p: np.ndarray) -> "JointSpreads | None":
        k = len(edges)
        if k != p.shape[1] or len({e.shape for e in edges}) != 1 or len({d.shape for d in devs}) != 1:
            return None
        e = np.vstack(edges)
        if not e.size or devs[0].shape[1] != e.shape[1] + 1:
            return None
        if e.min() < 0.0 or e.max() > 1.0 or p.min() < 0.0 or p.max() > 1.0:
            return None
        off = 2.0 * np.arange(k)
        # position among all classes' edges = c * (bins - 1) + the bin within class c; + c makes
        # it c * bins + that bin, the row of a (k, bins) table
        idx = np.searchsorted((e + off[:, None]).ravel(), (p + off).ravel(order="F")) + np.repeat(np.arange(k), len(p))
        return cls(idx, np.stack(devs))

    def variance(self, terms: np.ndarray) -> float:
        k, _, bins = self.devs.shape
        d = np.bincount(self.idx, weights=terms.ravel(order="F"), minlength=k * bins).reshape(k, bins)
        return float(np.sum(np.einsum("kdb,kb->kd", self.devs, d) ** 2))


def _calibration_variance(terms: np.ndarray, spreads: "Spreads | JointSpreads", binary: bool) -> float:
    """Variance of the estimate from the calibrators' own error: the estimate moves by
    ``sum_i dL_i * delta_i`` when row i's calibrated probability moves by ``delta_i``; the
    deltas of one score bin move together, and the bins jointly as the bootstrap draws ``dev``
    (draws, bins) of the map did. Calibrators of different classes are taken as independent."""
    if isinstance(spreads, JointSpreads):
        return spreads.variance(terms)
    total = 0.0
    for c, spread in enumerate(spreads):
        if spread is None:
            continue
        b, dev = spread
        # binary: one calibrator moves P(class 1) up and P(class 0) down by the same amount
        d = terms[:, 1] - terms[:, 0] if binary else terms[:, c]
        total += float(np.sum((dev @ np.bincount(b, weights=d, minlength=dev.shape[1])) ** 2))
    return total


def expected_metrics(p: np.ndarray, q: np.ndarray, spreads: "Spreads | JointSpreads" = ()
                     ) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """(estimates, their standard deviations, expected confusion matrix) of one window, from the
    model's scores ``p`` and the calibrated probabilities ``q``; see the module docstring.
    ``spreads`` (per class: the score bin and calibration sd of each row, or None; or all classes'
    as one :class:`JointSpreads`) adds the calibrators' error to the standard deviations."""
    n, k = p.shape
    binary = k == 2
    pred = p.argmax(axis=1)
    hot = np.zeros((n, k))
    hot[np.arange(n), pred] = 1.0
    conf = q.T @ hot  # [true t, predicted c] = sum of q[i, t] over the rows predicted c
    tp, npred, ntrue = np.diag(conf).copy(), hot.sum(axis=0), q.sum(axis=0)
    precision, recall, f1 = ratios(tp, npred - tp, ntrue - tp)
    cols = [1] if binary else range(k)
    if binary:
        ranks, aucs = np.zeros((n, k)), np.full(k, np.nan)
        ranks[:, 1], aucs[1] = ranks_and_auc(p[:, 1], q[:, 1])
    else:
        ranks, aucs = ranks_and_aucs(p, q)
    values = {"accuracy": float(tp.sum() / n), "precision": float(summarise(precision, binary)),
              "recall": float(summarise(recall, binary)), "f1": float(summarise(f1, binary)),
              "roc_auc": float(summarise(aucs, binary))}

    with np.errstate(invalid="ignore", divide="ignore"):
        # the linear term of each metric for row i taking label t (columns: the label)
        w = _weights(precision, binary)
        t_prec = hot * np.where(npred > 0, w / npred, 0.0)
        w = _weights(recall, binary)
        t_rec = _finite(w * (hot / ntrue - tp / ntrue ** 2))
        w, d = _weights(f1, binary), npred + ntrue
        t_f1 = _finite(w * (2 * hot / d - 2 * tp / d ** 2))
        w = _weights(aucs, binary)
        s, pos = np.sum(q * ranks, axis=0), ntrue
        neg = n - pos
        a = 1.0 / (pos * neg)
        b = (-(pos + 0.5) * pos * neg - (s - pos * (pos + 1) / 2) * (n - 2 * pos)) / (pos * neg) ** 2
        t_auc = _finite(w * (a * ranks + b))
    terms = {"accuracy": hot / n, "precision": t_prec, "recall": t_rec, "f1": t_f1, "roc_auc": t_auc}
    var = _variances(q, np.stack(list(terms.values())))
    sds = {m: float(v) + _calibration_variance(t, spreads, binary) for v, (m, t) in zip(var, terms.items())}
    sds = {m: float(np.sqrt(max(v, 0.0))) if np.isfinite(values[m]) else float("nan") for m, v in sds.items()}
    return values, sds, conf


def expected_binary(p: np.ndarray, q1: np.ndarray,
                    spread: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`expected_metrics`' estimates and standard deviations of a binary model (scores ``p``
    (n, 2), calibrated P(classes[1]) ``q1``, its calibrator's ``spread``) on the positive column
    alone: the negative column's terms of precision, recall, F1 and AUC are zero (their weight
    is), so about half the numpy calls. The same arithmetic per row; the sums over the rows run
    in another order (dot products and 1-D sums for the (n, 2) matrix product and column sums),
    so a value can differ in its last digits (``tests/detectors/test_estimation_paths.py``:
    within 1e-12 relative)."""
    n = len(q1)
    pos = p[:, 1] > p[:, 0]  # argmax: the first column on a tie
    hot1 = pos.astype(float)
    q0 = 1.0 - q1
    # numpy scalars: a division by zero gives inf / NaN as in the general path, not an exception
    n1 = np.float64(np.count_nonzero(pos))
    tp = np.array([q0 @ (1.0 - hot1), q1 @ hot1])  # the confusion matrix's diagonal
    ntrue1, tp1 = q1.sum(), tp[1]
    precision, recall, f1 = ratios(tp[1:], n1 - tp[1:], ntrue1 - tp[1:])
    ranks, auc = ranks_and_auc(p[:, 1], q1)
    values = {"accuracy": float(tp.sum() / n), "precision": float(precision[0]), "recall": float(recall[0]),
              "f1": float(f1[0]), "roc_auc": auc}

    with np.errstate(invalid="ignore", divide="ignore"):
        # each metric's linear term for row i labelled positive (a negative label's is zero, but
        # for accuracy: 1/n for the predicted class)
        inv_n = 1.0 / n
        t_prec = hot1 * (1.0 / n1 if n1 > 0 else 0.0)
        t_rec = _finite(hot1 / ntrue1 - tp1 / ntrue1 ** 2)
        d = n1 + ntrue1
        t_f1 = _finite(2 * hot1 / d - 2 * tp1 / d ** 2)
        s, neg = np.dot(q1, ranks), n - ntrue1
        a = 1.0 / (ntrue1 * neg)
        b = (-(ntrue1 + 0.5) * ntrue1 * neg - (s - ntrue1 * (ntrue1 + 1) / 2) * (n - 2 * ntrue1)) / (ntrue1 * neg) ** 2
        t_auc = _finite(a * ranks + b)
    # Var of the sum of the terms: per row q L^2 - (q L)^2, L the term of the label with
    # probability q (accuracy: the predicted class's probability, every other term zero)
    qs = np.empty((5, n))
    np.copyto(qs[0], np.where(pos, q1, q0))
    qs[1:] = q1
    terms = np.empty((5, n))
    terms[0] = inv_n
    terms[1], terms[2], terms[3], terms[4] = t_prec, t_rec, t_f1, t_auc
    x = qs * terms
    var = np.sum(qs * terms ** 2 - x ** 2, axis=1)
    sds = {}
    for i, m in enumerate(METRICS):
        v = float(var[i])
        if spread is not None:
            # the calibrator moves P(classes[1]) up and P(classes[0]) down: d = L(1) - L(0)
            d_row = np.where(pos, inv_n, -inv_n) if i == 0 else terms[i]
            bins, dev = spread
            v += 0.0 + float(np.sum((dev @ np.bincount(bins, weights=d_row, minlength=dev.shape[1])) ** 2))
        else:
            v += 0.0
        sds[m] = float(np.sqrt(max(v, 0.0))) if np.isfinite(values[m]) else float("nan")
    return values, sds


def bootstrap_sds(p: np.ndarray, q: np.ndarray, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The spread of the realised metrics when the labels are drawn ``draws`` times from ``q``
    (the slow, assumption-free check of :func:`expected_metrics`' standard deviations)."""
    n, k = q.shape
    binary = k == 2
    u = np.random.default_rng(seed).random((draws, n))
    y = (u[..., None] > np.cumsum(q, axis=1)[None, :, :-1]).sum(axis=2)
    pred = p.argmax(axis=1)
    eye = np.eye(k, dtype=bool)
    hot, yt = eye[pred], eye[y]  # (n, k), (draws, n, k)
    tp = (yt & hot).sum(1).astype(float)
    precision, recall, f1 = ratios(tp, hot.sum(0) - tp, yt.sum(1) - tp)
    cols = [1] if binary else list(range(k))
    aucs = np.full((draws, k), np.nan)
    for c in cols:
        aucs[:, c] = auc_from_ranks(rankdata(p[:, c]), yt[:, :, c])
    draws_of = {"accuracy": (y == pred).mean(axis=1), "precision": summarise(precision, binary),
                "recall": summarise(recall, binary), "f1": summarise(f1, binary), "roc_auc": summarise(aucs, binary)}
    out = {}
    for m, d in draws_of.items():
        d = d[np.isfinite(d)]
        out[m] = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
    return out
