"""The calibrator of CBPE: one score -> P(class) map per class, chosen on the reference.

NannyML always fits isotonic regression (one-vs-rest, renormalised). Isotonic is the right shape
when the model's scores are badly calibrated and the reference is large, but on a small
reference it overfits: a step function with hundreds of steps whose noise becomes the estimate's
bias; and a model whose scores are already calibrated only gains the map's noise. So
:func:`fit_calibrator` fits three candidates on held-out folds of the reference (5-fold
cross-validation; for a multiclass model one kind for all classes, by the multiclass Brier score of
the renormalised rows, :func:`fit_calibrators`) and keeps the scores as they are unless Platt or
isotonic lowers the held-out Brier score by more than one standard error of the paired per-row
difference, or the reference's accuracy is more than 3 standard errors away from its mean
top-class score (the rule ``tested``: evidence that the scores are miscalibrated); then the fitted
kind with the lower held-out Brier score is kept. The second test is for underconfident
multiclass models: on scikit-learn's digits (10 classes, ~900 reference rows, scores 5 points
below the accuracy, z 5 to 6.6) per-class Platt gained only 0 to 1.4 standard errors of Brier
score, so the Brier test alone kept the raw scores on 5 of 10 references and the estimated
accuracy was 3 points low (bench/README.md, "Over many seeds"):

* ``identity``: the model's score as it is (an already calibrated model loses nothing);
* ``platt``: a logistic map of the score's log-odds, two numbers (a smooth fix of over- or
  under-confidence that needs few labels);
* ``isotonic``: the monotone step function (any monotone miscalibration, needs many labels). Its
  end blocks without an event (the lowest scores with no row of the class, the highest with only
  rows of it) get Jeffreys' posterior rate, 0.5 / (m + 1) from the end on average over a block of
  m rows (within it following the model's own score), not the maximum-likelihood 0 or 1
  (:func:`_bounded_ends`). At exactly 0 a window's rows there
  counted as certain, with no variance of their own, and the bootstrap spread below gave them
  none either (no resample has an event there): on scikit-learn's breast_cancer, whose 569 rows
  hold 2 benign ones scored below 0.5, the 5 of 20 references that got neither estimated recall 1
  with a band of width ~0 while the windows held both, and the recall and ROC AUC bands covered
  76 % (bench/README.md, "Performance estimation").

Every calibrator is stored as a handful of numbers (Platt's two, isotonic's knots), so the state
is JSON and small.

Other rules (:func:`choose`, ``rule=``) and kinds are here for the benchmark that compared them
(``bench/estimation_references.py``, bench/README.md): ``se`` tests only the fitted map with the
lower held-out Brier score against the identity (on breast_cancer's 284 rows isotonic's lower
mean comes with a wider spread, 0.97 standard errors, while Platt's gain is 1.44: ``se`` keeps the
badly calibrated scores, ``tested`` sees the miscalibration through Platt and then takes
isotonic), ``stack`` / ``shrink`` blend the kinds with weights from the held-out Brier score (kind ``blend``, stored as
knots), ``bagged`` averages isotonic fits on bootstrap resamples, ``metric`` / ``metric_se`` score
each kind by how well its out-of-fold probabilities estimate accuracy, F1 and ROC AUC on
(shifted) resamples of the reference (:mod:`driftline.detectors.estimation_select`), ``brier`` (the
default until 2026-12) takes the lowest held-out Brier score without a test, which on a calibrated
model picks a fitted map by the reference's noise (Platt on 7 of 10 references of the binary
benchmark, where it lowered every window's estimated ROC AUC). None beat ``tested`` on every case.

A fitted map is itself uncertain (a few hundred labels per class); :func:`fit_calibrator` also
refits the chosen kind on :data:`SPREAD_DRAWS` bootstrap resamples of the reference and keeps how
each draw's calibrated probability deviates from the draws' mean in :data:`SPREAD_BINS` score bins
(quantiles of the reference's scores). CBPE adds that error to its bands
(:func:`driftline.detectors.estimation_metrics.expected_metrics`): shared by the rows of one bin
and, across bins, moving as the draws move. The joint draws matter: Platt's two numbers move every
bin at once (a flatter map lowers the high scores *and* raises the low ones), which shifts ROC AUC
coherently; bins taken as independent understated the AUC band (88 % coverage at a nominal 95 %
in the benchmark). Unlike the labels' sampling error it does not shrink as a window grows. The
identity has nothing fitted and no spread. An isotonic end block without an event takes, in each
draw, a draw from its Beta posterior instead of the resample's (always event-free) block.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> s = rng.uniform(size=3000); y = (rng.uniform(size=3000) < s ** 2).astype(float)
>>> fit_calibrator(s, y).kind in ("platt", "isotonic")
True
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from driftline.detectors.estimation_select import pick_by_metrics

__all__ = ["Calibrator", "calibrate_columns", "fit_calibrator", "fit_calibrators", "choose", "held_out",
           "row_losses", "stack_weights", "top_class_z", "KINDS", "BASE_KINDS", "RULES", "RULE", "FOLDS",
           "SPREAD_DRAWS", "SPREAD_BINS"]

BASE_KINDS = ("identity", "platt", "isotonic")  # in order of preference on a tie
KINDS = (*BASE_KINDS, "bagged", "blend")  # bagged isotonic; a stacked blend of the base kinds
RULES = ("tested", "brier", "se", "stack", "shrink", "metric", "metric_se")
RULE = "tested"
SE_MARGIN = 1.0  # rules "tested", "se": standard errors of the held-out Brier gain a fitted map must beat
TOP_Z = 3.0  # rule "tested": |accuracy - mean top-class score| on the reference, in standard errors
GRID = 200  # quantile knots of a map stored as points (bagged, blend)
BAG = 40  # isotonic fits averaged by "bagged"
FOLDS = 5
SPREAD_DRAWS = 40  # covariance of 10 bins: enough draws for a stable rank
SPREAD_BINS = 10
PRIOR = 0.5  # isotonic's end blocks without an event: Jeffreys' Beta(PRIOR, PRIOR) posterior (0: the MLE, as before 2026-12-03)
_EPS = 1e-6  # log-odds of scores 0 and 1 stay finite


class Calibrator:
    """One calibrated probability map ``score -> P(class)``; call it on an array of scores."""

    def __init__(self, kind: str, params: Mapping[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown calibrator kind {kind!r}; one of {KINDS}")
        self.kind = kind
        self.params = dict(params or {})
        if kind in ("isotonic", "bagged", "blend"):
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

    @property
    def spread_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges, (draws, bins) deviations) of :meth:`spread`; both empty without a spread."""
        return self._edges, self._dev

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


def _grid(s: np.ndarray) -> np.ndarray:
    """The knots of a map stored as points: 0, 1 and GRID quantiles of the reference's scores."""
    return np.unique(np.r_[0.0, np.quantile(s, np.linspace(0.0, 1.0, GRID)), 1.0])


def _boots(n: int, seed: int, draws: int = SPREAD_DRAWS) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(draws)]


def _bounded_ends(x: np.ndarray, v: np.ndarray, s: np.ndarray,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Isotonic knot values ``v`` (at scores ``x``, fitted on the scores ``s``) with an end block at
    exactly 0 or 1 moved inside. Such a block is m rows without an event (the lowest scores, none
    of the class; the highest, all of it), and the maximum-likelihood rate 0 (1) claims the class
    never (always) occurs there: every window's rows in it would count as certain, with no
    variance of their own and none from the bootstrap (every resample has no event either).

    The block's mean rate becomes the posterior mean under Jeffreys' Beta(PRIOR, PRIOR) prior,
    r = PRIOR / (m + 2 PRIOR) from the end; with ``rng``, a draw from that posterior, Beta(PRIOR,
    m + PRIOR) (the spread's bootstrap draws). The reference cannot say where in the block the
    events would fall; the rate follows the model's own score there (the bottom block's rate at
    score s is r * s / mean(s over the block's rows), the top's distance from 1 likewise in 1 - s),
    so a window of the most confident rows gets fewer events than one of rows near the block's
    inner edge. Linear in s, so the block's knots hold it exactly; kept within the neighbouring
    block's value (the map stays monotone)."""
    v = np.array(v, dtype=float)
    if PRIOR <= 0 or not len(v):
        return v
    for low in (True, False):
        at = v <= 0.0 if low else v >= 1.0
        if not at.any():
            continue
        rows = s[s <= x[at].max()] if low else 1.0 - s[s >= x[at].min()]
        r = float(rng.beta(PRIOR, len(rows) + PRIOR)) if rng is not None else PRIOR / (len(rows) + 2 * PRIOR)
        inner = (float(v[~at].min()) if low else 1.0 - float(v[~at].max())) if (~at).any() else 1.0
        mean = float(rows.mean()) if len(rows) else 0.0
        gap = r * (x[at] if low else 1.0 - x[at]) / mean if mean > 0 else np.full(int(at.sum()), r)
        gap = np.minimum(gap, inner)
        v[at] = gap if low else 1.0 - gap
    return v


def _fit_kind(kind: str, s: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
              rng: np.random.Generator | None = None) -> Calibrator:
    """One class's map of ``kind`` fitted on ``(s, y)``; ``blend`` needs its ``weights`` over
    :data:`BASE_KINDS`."""
    if kind == "identity":
        return Calibrator("identity")
    if kind == "platt":
        x = logit(np.clip(s, _EPS, 1 - _EPS))[:, None]
        if y.min() == y.max():
            return Calibrator("identity")
        lr = LogisticRegression(C=1e6).fit(x, y)
        return Calibrator("platt", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        ky = _bounded_ends(iso.X_thresholds_, iso.y_thresholds_, s, rng)
        return Calibrator("isotonic", {"x": iso.X_thresholds_.tolist(), "y": ky.tolist()})
    grid = _grid(s)
    if kind == "bagged":
        members = [_fit_kind("isotonic", s[i], y[i])(grid) for i in _boots(len(s), 0, BAG)]
        return Calibrator("bagged", {"x": grid.tolist(), "y": np.mean(members, axis=0).tolist()})
    w = np.asarray(weights, dtype=float)
    parts = [_fit_kind(k, s, y) for k, wk in zip(BASE_KINDS, w) if wk > 0]
    y_grid = sum(wk * c(grid) for wk, c in zip(w[w > 0], parts))
    return Calibrator("blend", {"x": grid.tolist(), "y": np.clip(y_grid, 0.0, 1.0).tolist(), "w": w.tolist()})


def calibrate_columns(cals: Sequence[Calibrator], p: np.ndarray) -> np.ndarray:
    """Column c of ``p`` through ``cals[c]``, unnormalised: (n, k). All Platt maps (or all identities)
    run as one array operation, element for element the same as one calibrator per column."""
    kinds = {c.kind for c in cals}
    if kinds == {"platt"}:
        a = np.array([c.params["a"] for c in cals])
        b = np.array([c.params["b"] for c in cals])
        return expit(a * logit(np.clip(p, _EPS, 1 - _EPS)) + b)
    if kinds == {"identity"}:
        return np.array(p, dtype=float)
    return np.column_stack([c(p[:, i]) for i, c in enumerate(cals)])


def _renormalised(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    total = q.sum(axis=1, keepdims=True)
    return np.where(total > 0, q / np.where(total > 0, total, 1.0), p)


def _apply(cals: list[Calibrator], p: np.ndarray) -> np.ndarray:
    """The (n, k) probabilities CBPE uses: binary, one map of column 1; else renormalised rows."""
    if p.shape[1] == 2:
        q1 = cals[0](p[:, 1])
        return np.c_[1.0 - q1, q1]
    return _renormalised(np.column_stack([c(p[:, j]) for j, c in enumerate(cals)]), p)


def _columns(p: np.ndarray) -> list[int]:
    return [1] if p.shape[1] == 2 else list(range(p.shape[1]))


def held_out(p: np.ndarray, codes: np.ndarray, kinds: tuple[str, ...] = BASE_KINDS, *, folds: int = FOLDS,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Each kind's out-of-fold probabilities (n, k) of the reference, ``folds`` random folds:
    every row calibrated by a map fitted without it, as CBPE would use it."""
    n, k = p.shape
    onehot = np.eye(k)[codes]
    fold = np.random.default_rng(seed).permutation(n) % folds
    out = {kind: np.zeros((n, k)) for kind in kinds}
    for f in range(folds):
        train, test = fold != f, fold == f
        for kind in kinds:
            cals = [_fit_kind(kind, p[train, c], onehot[train, c]) for c in _columns(p)]
            out[kind][test] = _apply(cals, p[test])
    return out


def row_losses(q: Mapping[str, np.ndarray], codes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row (multiclass) Brier loss of each kind's probabilities."""
    return {kind: np.sum((v - np.eye(v.shape[1])[codes]) ** 2, axis=1) for kind, v in q.items()}


def stack_weights(q: Mapping[str, np.ndarray], codes: np.ndarray,
                  support: tuple[str, ...] = BASE_KINDS) -> np.ndarray:
    """Convex weights over :data:`BASE_KINDS` (non-zero only on ``support``) whose mix of the
    held-out probabilities has the lowest Brier score (stacking)."""
    target = np.eye(q[BASE_KINDS[0]].shape[1])[codes].ravel()
    a = np.column_stack([q[k].ravel() for k in support])
    g, c = a.T @ a, a.T @ target
    m = len(support)
    res = minimize(lambda w: w @ g @ w - 2 * c @ w, np.full(m, 1.0 / m), jac=lambda w: 2 * (g @ w - c),
                   bounds=[(0.0, 1.0)] * m, constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0},
                   method="SLSQP")
    w = np.zeros(len(BASE_KINDS))
    w[[BASE_KINDS.index(k) for k in support]] = np.clip(res.x, 0.0, None)
    w[w < 1e-3] = 0.0
    return w / w.sum()


def choose(p: np.ndarray, codes: np.ndarray, rule: str = RULE, *, folds: int = FOLDS,
           seed: int = 0) -> tuple[str, np.ndarray | None]:
    """The kind (and a blend's weights) that ``rule`` picks on the labelled reference:

    * ``tested`` (the default): the identity unless Platt or isotonic lowers the held-out Brier score
      by more than one standard error of the paired per-row difference, or the reference's accuracy
      differs from its mean top-class score by more than :data:`TOP_Z` standard errors
      (:func:`top_class_z`; evidence that the scores are miscalibrated); then the one of Platt and
      isotonic with the lower held-out Brier score;
    * ``brier``: the lowest held-out Brier score of identity, Platt and isotonic;
    * ``se``: the identity unless the best of Platt and isotonic lowers the held-out Brier score
      by more than the standard error of that difference (paired over the rows);
    * ``stack``: a convex blend of the three with weights from the held-out Brier score;
    * ``metric``: the lowest held-out error of the estimated accuracy, F1 and ROC AUC on resamples
      of the reference (:mod:`driftline.detectors.estimation_select`); ``metric_se``: a more
      flexible kind only when it lowers that error by more than one standard error.
    """
    if rule not in RULES:
        raise ValueError(f"unknown calibrator rule {rule!r}; one of {RULES}")
    q = held_out(p, codes, folds=folds, seed=seed)
    if rule == "stack":
        return "blend", stack_weights(q, codes)
    if rule in ("metric", "metric_se"):  # margin 0: the lowest error; 1: a standard error to leave a simpler kind
        return pick_by_metrics(p, codes, q, BASE_KINDS, seed=seed, margin=0.0 if rule == "metric" else 1.0), None
    loss = row_losses(q, codes)
    lowest = min(BASE_KINDS, key=lambda k: (round(float(loss[k].mean()), 12), BASE_KINDS.index(k)))
    if rule == "brier":
        return lowest, None
    if rule == "tested":
        if not (any(_gain_in_se(loss, k) > SE_MARGIN for k in BASE_KINDS[1:]) or abs(top_class_z(p, codes)) > TOP_Z):
            return "identity", None
        # miscalibrated: the fitted map with the lower held-out Brier score (the lowest of the three
        # whenever the Brier test is what found it)
        return min(BASE_KINDS[1:], key=lambda k: (round(float(loss[k].mean()), 12), BASE_KINDS.index(k))), None
    best = min(BASE_KINDS[1:], key=lambda k: float(loss[k].mean()))
    if rule == "shrink":
        return "blend", stack_weights(q, codes, ("identity", best))
    return (best if _gain_in_se(loss, best) > SE_MARGIN else "identity"), None


def top_class_z(p: np.ndarray, codes: np.ndarray) -> float:
    """How far the reference's accuracy lies from the mean top-class score, in standard errors of
    the paired per-row difference (0 when the rows do not differ). For calibrated scores it is
    about standard normal; it is the bias the identity gives the estimated accuracy."""
    d = (np.argmax(p, axis=1) == codes) - np.max(p, axis=1)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(d.mean()) / se if se > 0 else 0.0


def _gain_in_se(loss: Mapping[str, np.ndarray], kind: str) -> float:
    """How far ``kind`` lowers the held-out Brier score below the identity's, in standard errors of
    the paired per-row difference (0 when the rows do not differ)."""
    d = loss["identity"] - loss[kind]
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    return float(d.mean()) / se if se > 0 else 0.0


def fit_calibrators(p: np.ndarray, codes: np.ndarray, *, rule: str = RULE, kind: str | None = None,
                    folds: int = FOLDS, seed: int = 0) -> list[Calibrator]:
    """CBPE's calibrators for scores ``p`` (n, k) and label codes: binary, one for column 1;
    multiclass, one per class, all of one kind (the renormalised rows are what is scored and
    used), by default the one ``rule`` picks (:func:`choose`), with its spread."""
    weights = None
    if kind is None:
        kind, weights = choose(p, codes, rule, folds=folds, seed=seed)
    elif kind == "blend":
        weights = stack_weights(held_out(p, codes, folds=folds, seed=seed), codes)
    return [_fitted_with_spread(kind, p[:, c], (codes == c).astype(float), weights, seed) for c in _columns(p)]


def fit_calibrator(scores: np.ndarray, is_class: np.ndarray, *, kind: str | None = None, rule: str = RULE,
                   folds: int = FOLDS, seed: int = 0) -> Calibrator:
    """One class's calibrator: ``scores`` the model's probabilities of the class, ``is_class``
    1.0 where the label is that class; ``kind`` forced, or chosen by ``rule``."""
    s = np.asarray(scores, dtype=float)
    return fit_calibrators(np.c_[1.0 - s, s], (np.asarray(is_class) > 0).astype(int), rule=rule, kind=kind,
                           folds=folds, seed=seed)[0]


def _fitted_with_spread(kind: str, s: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                        seed: int) -> Calibrator:
    """The map fitted on all of the rows, with its bootstrap draws (see the module docstring)."""
    chosen = _fit_kind(kind, s, y, weights)
    if chosen.kind == "identity":
        return chosen
    # the bins' inner edges and centres: quantiles of the reference's scores
    edges = np.quantile(s, np.arange(1, SPREAD_BINS) / SPREAD_BINS)
    centres = np.quantile(s, (np.arange(SPREAD_BINS) + 0.5) / SPREAD_BINS)
    # a bag's members are bootstrap fits already: their spread is one isotonic map's (conservative)
    post = np.random.default_rng([seed, 1])  # isotonic's end blocks: posterior draws (_bounded_ends)
    draws = np.array([_fit_kind("isotonic" if kind == "bagged" else chosen.kind, s[i], y[i], weights, post)(centres)
                      for i in _boots(len(s), seed if kind != "bagged" else 0, BAG if kind == "bagged" else SPREAD_DRAWS)])
    dev = (draws - draws.mean(axis=0)) / np.sqrt(len(draws) - 1)
    return Calibrator(chosen.kind, {**chosen.params, "edges": edges.tolist(), "dev": dev.ravel().tolist()})
