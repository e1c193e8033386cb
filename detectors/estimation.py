"""Performance without labels: CBPE for classifiers, DLE for regressors, each estimate with a band.

Both estimators are fitted on a labelled reference and then estimate a window's metrics from what
the model logs at prediction time, before any label arrives (issue 18). Pure numpy / scipy /
scikit-learn: no store, no broker; the collector's detectors call them per window and segment.

* :class:`CBPE` (confidence-based performance estimation, NannyML's method): the model's class
  probabilities are calibrated on the reference (:mod:`driftline.detectors.estimation_calib`), and
  each window's expected confusion matrix, accuracy, precision, recall, F1 and ROC AUC follow
  from the calibrated probabilities. The model's decision is the arg-max of its *own* scores
  (binary: ``scores[:, 1] > 0.5``); only the labels' expectation uses the calibrated ones.
  Binary precision / recall / F1 are those of the positive class ``classes[1]``; multiclass ones
  are macro averages over the classes.
* :class:`DLE` (direct loss estimation): two gradient-boosted models of the absolute and the
  squared error from features + prediction (:mod:`driftline.detectors.estimation_dle`).

Bands. The band of an estimate is the range the *realised* metric of the window falls in with
probability ``level`` if the calibration (the loss model) holds: the labels of the window's rows
are independent draws from the calibrated probabilities, so the realised accuracy is a
Poisson-binomial mean (closed-form variance), and precision, recall, F1 and AUC get theirs from
the delta method (:mod:`driftline.detectors.estimation_metrics`); the band is the normal interval
``value +- z * sd`` clipped to [0, 1]. The calibrator's own error (bootstrapped on the reference
when it is fitted) is added: it dominates when the reference is small and the window large.
What no estimator of this kind sees is a concept shift (P(y | x) changes): the estimate stays,
the realised value moves, and the self-grading of the estimates (realised vs estimated per
window) is what reports it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(size=2000); y = np.where(rng.uniform(size=2000) < p, "yes", "no")
>>> cbpe = CBPE.fit(np.c_[1 - p, p], y, ["no", "yes"])
>>> est = cbpe.estimate(np.c_[1 - p[:1000], p[:1000]])
>>> round(est["accuracy"].value, 2), est["accuracy"].lower < est["accuracy"].value < est["accuracy"].upper
(0.75, True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from driftline.detectors.estimation_calib import Calibrator, calibrate_columns, fit_calibrators
from driftline.detectors.estimation_dle import LossModel, fit_loss_model
from driftline.detectors.estimation_metrics import (METRICS, JointSpreads, binary_columns, expected_binary,
                                                  expected_metrics, normal_quantile)
from driftline.detectors.estimation_realised import realised_from_codes, realised_positive

__all__ = [
    "Estimate", "CBPE", "DLE", "EstimationError", "realised_classification", "realised_from_codes",
    "realised_positive", "realised_regression",
    "CLASSIFICATION_METRICS", "REGRESSION_METRICS",
]

CLASSIFICATION_METRICS = METRICS
REGRESSION_METRICS = ("mae", "rmse")
_SUM_TOLERANCE = 0.01  # float32 scores and rounding in the log still sum to 1 within this
_STATE_VERSION = 1


# Not in the error tree: the CLI turns it into ConfigError and the stream logs it as a reason, so it
# never reaches users as itself.
class EstimationError(ValueError):
    """Input an estimator cannot use: scores that are not probabilities, too few labels, NaN,
    a class count that does not match. The message says what was wrong (never the values)."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """One metric for one window: ``value`` and its band ``[lower, upper]`` at ``level`` over
    ``n`` rows (the band of the *realised* metric when the calibration holds)."""

    metric: str
    value: float
    lower: float
    upper: float
    n: int
    level: float = 0.95

    def below(self, threshold: float) -> bool:
        """A verdict "estimated metric below ``threshold``": only when the whole band is."""
        return self.upper < threshold

    def above(self, threshold: float) -> bool:
        """A verdict "estimated loss above ``threshold``" (MAE, RMSE): only when the whole band is."""
        return self.lower > threshold


# -- input checks ---------------------------------------------------------------------------------
def _z(level: float) -> float:
    """The normal quantile of a two-sided band at ``level``."""
    return normal_quantile(0.5 + level / 2)


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise EstimationError(f"level must be in (0, 1), got {level}")
    return float(level)


def _check_scores(scores: Any, k: int) -> np.ndarray:
    p = np.asarray(scores, dtype=float)
    if p.ndim == 1 and k == 2:
        if len(p) and 0.0 <= p.min() and p.max() <= 1.0:
            # P(classes[1]) in [0, 1] (NaN fails): [1 - p, p] is in [0, 1] and sums to 1 within
            # the tolerance, so the checks below pass and the clip changes nothing (the stream's case)
            return binary_columns(p)
        p = binary_columns(p)  # binary scores given as P(classes[1])
    if p.ndim != 2:
        raise EstimationError(f"scores must be an (n, {k}) array of class probabilities, got shape {p.shape}")
    if p.shape[1] != k:
        raise EstimationError(f"scores have {p.shape[1]} columns but there are {k} classes")
    if p.shape[0] == 0:
        raise EstimationError("no rows to estimate over")
    if not np.isfinite(p).all():
        raise EstimationError(f"scores contain NaN or infinite values in {int((~np.isfinite(p)).any(1).sum())} rows")
    if p.min() < -1e-9 or p.max() > 1 + 1e-9:
        raise EstimationError(f"scores are not probabilities (values from {p.min():.3g} to {p.max():.3g})")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _SUM_TOLERANCE:
        raise EstimationError(f"scores are not probabilities (rows sum to {sums[worst]:.3g})")
    return np.clip(p, 0.0, 1.0)


def _label_codes(labels: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Class index of each label, -1 for a missing one (None / NaN); unknown labels are an error."""
    index = {str(c): i for i, c in enumerate(classes)}
    names = np.asarray(labels)
    if names.dtype.kind == "U" and names.ndim == 1:  # all text (the stream's class names): no loop
        codes = np.full(len(names), -2, dtype=np.int64)
        for c, i in index.items():
            codes[names == c] = i
        if not (codes == -2).any():
            return codes  # else: a number's text ("1.0") or an unknown label, as below
    codes = np.empty(len(labels), dtype=np.int64)
    unknown = 0
    for i, y in enumerate(labels):  # once per reference, not per window
        if y is None or (isinstance(y, float) and math.isnan(y)):
            codes[i] = -1
            continue
        key = str(y)
        if key not in index and isinstance(y, (float, np.floating)) and float(y).is_integer():
            key = str(int(y))
        if key not in index:
            unknown += 1
            codes[i] = -1
            continue
        codes[i] = index[key]
    if unknown:
        raise EstimationError(f"{unknown} labels are not among the {len(classes)} classes")
    return codes


def _check_classes(classes: Sequence[str]) -> list[str]:
    names = [str(c) for c in classes]
    if len(names) < 2:
        raise EstimationError(f"a classifier needs at least 2 classes, got {len(names)}")
    if len(set(names)) != len(names):
        raise EstimationError("classes must be distinct")
    return names


def _scores_and_codes(scores: Any, labels: Sequence, classes: Sequence[str]) -> tuple[list[str], Any, Any]:
    """Checked class names, score rows and label codes (-1: unlabelled), as many labels as rows."""
    names = _check_classes(classes)
    p = _check_scores(scores, len(names))
    codes = _label_codes(labels, names)
    if len(codes) != len(p):
        raise EstimationError(f"{len(p)} score rows but {len(codes)} labels")
    return names, p, codes


def realised_classification(scores: Any, labels: Sequence, classes: Sequence[str]) -> dict[str, float]:
    """The realised accuracy, precision, recall, F1 and ROC AUC over the labelled rows (labels
    None / NaN are left out), with the same conventions as :meth:`CBPE.estimate`. A metric that
    is undefined on these rows (AUC with one class present) is NaN.

    >>> realised_classification([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["a", "b", "b"], ["a", "b"])["accuracy"]
    0.6666666666666666
    """
    names, p, codes = _scores_and_codes(scores, labels, classes)
    keep = codes >= 0
    if not keep.any():
        raise EstimationError("no labelled rows")
    return realised_from_codes(p[keep], codes[keep])


def realised_regression(predictions: Any, labels: Any) -> dict[str, float]:
    """The realised MAE and RMSE over the labelled rows (label NaN is left out).

    >>> realised_regression([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])["mae"]
    0.6666666666666666
    """
    pred = np.asarray(predictions, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    if len(pred) != len(y):
        raise EstimationError(f"{len(pred)} predictions but {len(y)} labels")
    if not np.isfinite(pred).all():
        raise EstimationError("predictions contain NaN or infinite values")
    keep = np.isfinite(y)
    if not keep.any():
        raise EstimationError("no labelled rows")
    err = pred[keep] - y[keep]
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}


# -- CBPE ---------------------------------------------------------------------------------------
class CBPE:
    """Confidence-based performance estimation of a classifier (see the module docstring).

    Fit on a labelled reference with :meth:`fit`; :meth:`estimate` a window from its scores.
    """

    def __init__(self, classes: Sequence[str], calibrators: Sequence[Calibrator], *, level: float = 0.95,
                 reference_rows: int = 0) -> None:
        self.classes = _check_classes(classes)
        if len(calibrators) != (1 if len(self.classes) == 2 else len(self.classes)):
            raise EstimationError("one calibrator per class (binary: one, for classes[1])")
        self.calibrators = list(calibrators)
        self.level = _check_level(level)
        self.reference_rows = int(reference_rows)

    @classmethod
    def fit(cls, scores: Any, labels: Sequence, classes: Sequence[str], *, level: float = 0.95,
            min_labels: int = 200) -> "CBPE":
        """Calibrate on the labelled reference: ``scores`` (n, k) class probabilities in
        ``classes`` order, ``labels`` the class names (None / NaN for an unlabelled row)."""
        names, p, codes = _scores_and_codes(scores, labels, classes)
        keep = codes >= 0
        labelled = int(keep.sum())
        if labelled < min_labels:
            raise EstimationError(f"reference has {labelled} labelled rows; CBPE needs at least {min_labels}")
        p, y = p[keep], codes[keep]
        if len(np.unique(y)) < 2:
            raise EstimationError("reference labels hold a single class; CBPE needs at least two")
        return cls(names, fit_calibrators(p, y), level=level, reference_rows=labelled)

    # -- calibrated probabilities
    def calibrated(self, scores: Any) -> np.ndarray:
        """The (n, k) calibrated class probabilities of ``scores`` (rows renormalised to 1)."""
        p = _check_scores(scores, len(self.classes))
        return self._calibrate(p)

    def _calibrate(self, p: np.ndarray) -> np.ndarray:
        if len(self.classes) == 2:
            q = self.calibrators[0](p[:, 1])
            return binary_columns(q)
        q = calibrate_columns(self.calibrators, p)
        total = q.sum(axis=1, keepdims=True)
        # a row every calibrator maps to 0 keeps the model's own scores
        return np.where(total > 0, q / np.where(total > 0, total, 1.0), p)

    def confusion(self, scores: Any) -> np.ndarray:
        """The expected (k, k) confusion matrix, rows true class, columns predicted (sklearn's)."""
        p = _check_scores(scores, len(self.classes))
        return expected_metrics(p, self._calibrate(p))[2]

    def estimate(self, scores: Any, *, level: float | None = None) -> dict[str, Estimate]:
        """Estimated accuracy, precision, recall, F1 and ROC AUC of a window, each with its band at
        ``level`` (default: the one fitted with). Milliseconds for 1,000 rows: no loop over rows."""
        lvl = self.level if level is None else _check_level(level)
        p = _check_scores(scores, len(self.classes))
        if len(self.classes) == 2:  # the positive column alone: half the numpy calls
            cal = self.calibrators[0]
            values, sds = expected_binary(p, cal(p[:, 1]), cal.spread(p[:, 1]))
        else:
            tables = [c.spread_table for c in self.calibrators]
            spreads = JointSpreads.of([e for e, _ in tables], [d for _, d in tables], p)
            if spreads is None:
                spreads = [c.spread(p[:, i]) for i, c in enumerate(self.calibrators)]
            values, sds, _ = expected_metrics(p, self._calibrate(p), spreads)
        z = _z(lvl)
        out = {}
        for m in CLASSIFICATION_METRICS:
            v, sd = values[m], sds[m]
            lo, hi = (max(0.0, v - z * sd), min(1.0, v + z * sd)) if math.isfinite(v) else (math.nan, math.nan)
            out[m] = Estimate(m, v, lo, hi, len(p), lvl)
        return out

    # -- state
    def to_state(self) -> dict:
        """JSON-safe state (no pickle): the classes, the level and each calibrator's few numbers."""
        return {"kind": "cbpe", "version": _STATE_VERSION, "classes": list(self.classes), "level": self.level,
                "reference_rows": self.reference_rows, "calibrators": [c.to_state() for c in self.calibrators]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "CBPE":
        if state.get("kind") != "cbpe" or state.get("version") != _STATE_VERSION:
            raise EstimationError(f"not a CBPE state of version {_STATE_VERSION}")
        return cls(state["classes"], [Calibrator.from_state(c) for c in state["calibrators"]],
                   level=state["level"], reference_rows=state.get("reference_rows", 0))


# -- DLE ----------------------------------------------------------------------------------------
def _check_features(features: Any, n: int | None = None, d: int | None = None) -> np.ndarray:
    x = np.asarray(features, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise EstimationError(f"features must be an (n, d) numeric array, got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise EstimationError(f"{x.shape[0]} feature rows but {n} predictions")
    if d is not None and x.shape[1] != d:
        raise EstimationError(f"features have {x.shape[1]} columns; the reference had {d}")
    if np.isinf(x).any():
        raise EstimationError("features contain infinite values")
    return x  # NaN is a missing value the trees route


class DLE:
    """Direct loss estimation of a regressor (see the module docstring and
    :mod:`driftline.detectors.estimation_dle` for the models and the band)."""

    def __init__(self, model: LossModel, *, level: float = 0.95, reference_rows: int = 0) -> None:
        self.model = model
        self.level = _check_level(level)
        self.reference_rows = int(reference_rows)

    @classmethod
    def fit(cls, features: Any, predictions: Any, labels: Any, *, level: float = 0.95, min_labels: int = 200,
            seed: int = 0) -> "DLE":
        pred = np.asarray(predictions, dtype=float).ravel()
        x = _check_features(features, len(pred))
        y = np.asarray(labels, dtype=float).ravel()
        if len(y) != len(pred):
            raise EstimationError(f"{len(pred)} predictions but {len(y)} labels")
        if not np.isfinite(pred).all():
            raise EstimationError("predictions contain NaN or infinite values")
        keep = np.isfinite(y)
        labelled = int(keep.sum())
        if labelled < min_labels:
            raise EstimationError(f"reference has {labelled} labelled rows; DLE needs at least {min_labels}")
        model = fit_loss_model(x[keep], pred[keep], y[keep], seed=seed)
        return cls(model, level=level, reference_rows=labelled)

    def estimate(self, features: Any, predictions: Any, *, level: float | None = None) -> dict[str, Estimate]:
        """Estimated MAE and RMSE of a window with their bands at ``level``."""
        lvl = self.level if level is None else _check_level(level)
        pred = np.asarray(predictions, dtype=float).ravel()
        if len(pred) == 0:
            raise EstimationError("no rows to estimate over")
        if not np.isfinite(pred).all():
            raise EstimationError("predictions contain NaN or infinite values")
        x = _check_features(features, len(pred), self.model.n_features)
        z = _z(lvl)
        n = len(pred)
        mae, mae_sd, mse, mse_sd = self.model.window(x, pred)
        rmse = math.sqrt(mse)
        return {
            "mae": Estimate("mae", mae, max(0.0, mae - z * mae_sd), mae + z * mae_sd, n, lvl),
            "rmse": Estimate("rmse", rmse, math.sqrt(max(0.0, mse - z * mse_sd)),
                             math.sqrt(mse + z * mse_sd), n, lvl),
        }

    def to_state(self) -> dict:
        """JSON-safe state: the loss models' trees as base64 of little-endian numpy arrays (node
        tables, not a pickle: loading a state cannot run code, and it survives sklearn upgrades)."""
        return {"kind": "dle", "version": _STATE_VERSION, "level": self.level,
                "reference_rows": self.reference_rows, "model": self.model.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "DLE":
        if state.get("kind") != "dle" or state.get("version") != _STATE_VERSION:
            raise EstimationError(f"not a DLE state of version {_STATE_VERSION}")
        return cls(LossModel.from_state(state["model"]), level=state["level"],
                   reference_rows=state.get("reference_rows", 0))
