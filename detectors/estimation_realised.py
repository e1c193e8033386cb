"""Realised classification metrics of checked rows: what the labels say a window's performance was.

:func:`~driftline.detectors.estimation.realised_classification` checks a window's scores and
labels and calls :func:`realised_from_codes`; the stream re-grades a binary window at every close
with :func:`realised_positive` (its rows are P(classes[1]) already, its labels class names). The
conventions are :class:`~driftline.detectors.estimation.CBPE`'s: binary metrics of the positive
class ``classes[1]``, multiclass ones macro averages; a metric undefined on the rows is NaN.

>>> import numpy as np
>>> realised_positive(np.array([0.2, 0.7, 0.9]), np.array([False, True, False]))["accuracy"]
0.6666666666666666
"""

from __future__ import annotations

import numpy as np

from driftline.detectors.estimation_metrics import auc_from_ranks, nanmean_rows, ratios, tie_ranks

__all__ = ["realised_from_codes", "realised_positive"]


def realised_from_codes(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """:func:`~driftline.detectors.estimation.realised_classification` of checked score rows
    ``p`` (n, k) and label codes ``y`` (0..k-1, every row labelled)."""
    k, binary = p.shape[1], p.shape[1] == 2
    if binary:
        return _realised_binary(p, y)
    pred = p.argmax(axis=1)
    onehot = np.eye(k, dtype=bool)
    yt, yp = onehot[y], onehot[pred]
    tp = (yt & yp).sum(0).astype(float)
    fp = (~yt & yp).sum(0).astype(float)
    fn = (yt & ~yp).sum(0).astype(float)
    precision, recall, f1 = ratios(tp, fp, fn)
    cols = [1] if binary else range(k)
    auc = [auc_from_ranks(tie_ranks(p[:, c]), yt[:, c]) for c in cols]
    return {
        "accuracy": float(np.mean(pred == y)),
        "precision": float(precision[1] if binary else nanmean_rows(precision)),
        "recall": float(recall[1] if binary else nanmean_rows(recall)),
        "f1": float(f1[1] if binary else nanmean_rows(f1)),
        "roc_auc": float(auc[0] if binary else nanmean_rows(np.asarray(auc))),
    }


def _realised_binary(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """:func:`~driftline.detectors.estimation.realised_classification` of a binary model (the
    same numbers: every metric is a ratio of counts, the AUC's rank sum a sum of halves), with
    the positive class's counts alone: it grades every window as its labels arrive."""
    return _realised_counts(p[:, 1] > p[:, 0], p[:, 1], y == 1)  # argmax: the first column on a tie


def realised_positive(p1: np.ndarray, yes: np.ndarray) -> dict[str, float]:
    """:func:`~driftline.detectors.estimation.realised_classification` of a binary model from
    P(classes[1]) ``p1`` (1-D, in [0, 1]) and whether each row's label is classes[1] (``yes``):
    the same numbers without the checks, the label codes and the (n, 2) rows (the stream
    re-grades a window at every close)."""
    return _realised_counts(p1 > 1.0 - p1, p1, yes)  # the (n, 2) rows' argmax, as above


def _realised_counts(pred: np.ndarray, p1: np.ndarray, yes: np.ndarray) -> dict[str, float]:
    tp = np.count_nonzero(pred & yes)
    counts = np.array([[tp], [np.count_nonzero(pred) - tp], [np.count_nonzero(yes) - tp]], dtype=float)
    precision, recall, f1 = ratios(*counts)
    return {
        "accuracy": float(np.count_nonzero(pred == yes) / len(yes)),
        "precision": float(precision[0]), "recall": float(recall[0]), "f1": float(f1[0]),
        "roc_auc": float(auc_from_ranks(tie_ranks(p1), yes)),
    }
