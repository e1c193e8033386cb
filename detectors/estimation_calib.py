"""The calibrator of CBPE: one score -> P(class) map per class, chosen on the reference.

NannyML always fits isotonic regression (one-vs-rest, renormalised). Isotonic is the right shape
when the model's scores are badly calibrated and the reference is large, but on a small
reference it overfits: a step function with hundreds of steps whose noise becomes the estimate's
bias. So :func:`fit_calibrator` fits three candidates and keeps the one with the lowest Brier
score on held-out folds of the reference (5-fold cross-validation; for a multiclass model one kind
for all classes, by the multiclass Brier score of the renormalised rows, :func:`fit_calibrators`):

* ``identity``: the model's score as it is (an already calibrated model loses nothing);
* ``platt``: a logistic map of the score's log-odds, two numbers (a smooth fix of over- or
  under-confidence that needs few labels);
* ``isotonic``: the monotone step function (any monotone miscalibration, needs many labels).

Every calibrator is stored as a handful of numbers (Platt's two, isotonic's knots), so the state
is JSON and small.

A fitted map is itself uncertain (a few hundred labels per class); :func:`fit_calibrator` also
refits the chosen kind on :data:`SPREAD_DRAWS` bootstrap resamples of the reference and keeps how
each draw's calibrated probability deviates from the draws' mean in :data:`SPREAD_BINS` score bins
(quantiles of the reference's scores). CBPE adds that error to its bands
(:func:`driftline.detectors.estimation_metrics.expected_metrics`): shared by the rows of one bin
and, across bins, moving as the draws move. The joint draws matter: Platt's two numbers move every
bin at once (a flatter map lowers the high scores *and* raises the low ones), which shifts ROC AUC
coherently; bins taken as independent understated the AUC band (88 % coverage at a nominal 95 %
in the benchmark). Unlike the labels' sampling error it does not shrink as a window grows. The
identity has nothing fitted and no spread.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> s = rng.uniform(size=3000); y = (rng.uniform(size=3000) < s ** 2).astype(float)
>>> fit_calibrator(s, y).kind in ("platt", "isotonic")
True
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

__all__ = ["Calibrator", "fit_calibrator", "fit_calibrators", "multiclass_brier", "KINDS", "FOLDS", "SPREAD_DRAWS", "SPREAD_BINS"]

KINDS = ("identity", "platt", "isotonic")  # in order of preference on a tie
FOLDS = 5
SPREAD_DRAWS = 40  # covariance of 10 bins: enough draws for a stable rank
SPREAD_BINS = 10
_EPS = 1e-6  # log-odds of scores 0 and 1 stay finite


class Calibrator:
    """One calibrated probability map ``score -> P(class)``; call it on an array of scores."""

    def __init__(self, kind: str, params: Mapping[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown calibrator kind {kind!r}; one of {KINDS}")
        self.kind = kind
        self.params = dict(params or {})
        if kind == "isotonic":
            self._x = np.asarray(self.params["x"], dtype=float)
            self._y = np.asarray(self.params["y"], dtype=float)
        self._edges = np.asarray(self.params.get("edges", []), dtype=float)
        if "dev" in self.params:  # (draws, bins), scaled so that Var(D . delta) = sum((dev @ D) ** 2)
            self._dev = np.asarray(self.params["dev"], dtype=float).reshape(-1, len(self._edges) + 1)
        else:  # a state saved with per-bin sds only: bins independent
            self._dev = np.diag(np.asarray(self.params.get("sigma", []), dtype=float))

    def spread(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(bin of each score, the (draws, bins) deviations of the map in those bins), or None
        without a spread: the variance of ``sum_i d_i * delta(bin_i)`` is
        ``sum((dev @ bincount(bin, d)) ** 2)``."""
        if not self._dev.size:
            return None
        return np.searchsorted(self._edges, np.asarray(scores, dtype=float)), self._dev

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.kind == "identity":
            return s
        if self.kind == "platt":
            return expit(self.params["a"] * logit(np.clip(s, _EPS, 1 - _EPS)) + self.params["b"])
        return np.interp(s, self._x, self._y)  # constant beyond the reference's range

    def to_state(self) -> dict:
        return {"kind": self.kind, **{k: (list(map(float, v)) if isinstance(v, (list, np.ndarray)) else float(v))
                                      for k, v in self.params.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Calibrator":
        return cls(state["kind"], {k: v for k, v in state.items() if k != "kind"})

    def __repr__(self) -> str:
        return f"Calibrator({self.kind!r})"


def _fit_kind(kind: str, s: np.ndarray, y: np.ndarray) -> Calibrator:
    if kind == "identity":
        return Calibrator("identity")
    if kind == "platt":
        x = logit(np.clip(s, _EPS, 1 - _EPS))[:, None]
        if y.min() == y.max():
            return Calibrator("identity")
        lr = LogisticRegression(C=1e6).fit(x, y)
        return Calibrator("platt", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
    return Calibrator("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})


def cross_validated_brier(s: np.ndarray, y: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> dict[str, float]:
    """Held-out Brier score of each calibrator kind on ``folds`` random folds of ``(s, y)``."""
    fold = np.random.default_rng(seed).permutation(len(s)) % folds
    errors = {k: 0.0 for k in KINDS}
    for f in range(folds):
        train, test = fold != f, fold == f
        for kind in KINDS:
            c = _fit_kind(kind, s[train], y[train])
            errors[kind] += float(np.sum((c(s[test]) - y[test]) ** 2))
    return {k: v / len(s) for k, v in errors.items()}


def _best(briers: Mapping[str, float]) -> str:
    return min(KINDS, key=lambda k: (round(briers[k], 12), KINDS.index(k)))


def multiclass_brier(p: np.ndarray, codes: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> dict[str, float]:
    """Held-out multiclass Brier score of each kind applied to every class one-vs-rest and the
    rows renormalised, as CBPE uses them."""
    n, k = p.shape
    onehot = np.eye(k)[codes]
    fold = np.random.default_rng(seed).permutation(n) % folds
    errors = {kind: 0.0 for kind in KINDS}
    for f in range(folds):
        train, test = fold != f, fold == f
        for kind in KINDS:
            q = np.column_stack([_fit_kind(kind, p[train, c], onehot[train, c])(p[test, c]) for c in range(k)])
            total = q.sum(axis=1, keepdims=True)
            q = np.where(total > 0, q / np.where(total > 0, total, 1.0), p[test])
            errors[kind] += float(np.sum((q - onehot[test]) ** 2))
    return {kind: v / n for kind, v in errors.items()}


def fit_calibrators(p: np.ndarray, codes: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> list[Calibrator]:
    """CBPE's calibrators for scores ``p`` (n, k) and label codes: binary, one for column 1;
    multiclass, one per class, all of the kind with the lowest held-out multiclass Brier score
    (one kind for all classes: the renormalised rows are what is scored and used)."""
    if p.shape[1] == 2:
        return [fit_calibrator(p[:, 1], (codes == 1).astype(float), folds=folds, seed=seed)]
    kind = _best(multiclass_brier(p, codes, folds=folds, seed=seed))
    return [fit_calibrator(p[:, c], (codes == c).astype(float), kind=kind, seed=seed) for c in range(p.shape[1])]


def fit_calibrator(scores: np.ndarray, is_class: np.ndarray, *, kind: str | None = None, folds: int = FOLDS,
                   seed: int = 0) -> Calibrator:
    """The calibrator ``kind``, by default the one with the lowest held-out Brier score, fitted on
    all of the rows, with its spread (see the module docstring).

    ``scores`` are the model's probabilities of one class, ``is_class`` 1.0 where the label is
    that class. Ties (within 1e-12) go to the simpler kind.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(is_class, dtype=float)
    best = kind or _best(cross_validated_brier(s, y, folds=folds, seed=seed))
    chosen = _fit_kind(best, s, y)
    if chosen.kind == "identity":
        return chosen
    # the bins' inner edges and centres: quantiles of the reference's scores
    edges = np.quantile(s, np.arange(1, SPREAD_BINS) / SPREAD_BINS)
    centres = np.quantile(s, (np.arange(SPREAD_BINS) + 0.5) / SPREAD_BINS)
    rng = np.random.default_rng(seed)
    draws = np.array([_fit_kind(chosen.kind, s[i], y[i])(centres)
                      for i in (rng.integers(0, len(s), len(s)) for _ in range(SPREAD_DRAWS))])
    dev = (draws - draws.mean(axis=0)) / np.sqrt(SPREAD_DRAWS - 1)
    return Calibrator(chosen.kind, {**chosen.params, "edges": edges.tolist(), "dev": dev.ravel().tolist()})
