"""Concept drift and model performance on labelled predictions.

:class:`PerformanceDetector` computes per-window accuracy, F1 and ROC AUC (classifiers) or MAE
and RMSE (regressors) from bounded counters, and flags a window whose metric is worse than the
first full window's by more than ``degradation``. :class:`ErrorStreamDetector` runs one of
river's sequential detectors (ADWIN, Page-Hinkley, KSWIN, DDM) on the error stream (0/1 for a
classifier, absolute error for a regressor): it fires when the model starts being wrong more
often even if the inputs look exactly as before.

>>> det = ErrorStreamDetector("ddm")
>>> for i in range(2000): det.update(float(i % 10 == 0))
>>> for i in range(500): det.update(float(i % 2 == 0))
>>> det.close_window()[0].drift
True
"""

from __future__ import annotations

import base64
import math
import pickle
from typing import Any

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.histogram import category_key
from driftline.detectors.reference import prediction_features

__all__ = ["ERROR_DETECTORS", "ErrorStreamDetector", "PerformanceDetector", "infer_task"]

ERROR_DETECTORS = ("adwin", "page_hinkley", "kswin", "ddm")
_AUC_BINS = 200
_MAX_CLASSES = 100
_MAX_POSITIONS = 10


def _make_river(method: str, *, adwin_delta: float = 0.002, seed: int = 0, ddm_warm_start: int = 500) -> Any:
    from river import drift
    from river.drift import binary

    if method == "adwin":
        return drift.ADWIN(delta=adwin_delta)
    if method == "page_hinkley":
        return drift.PageHinkley()
    if method == "kswin":
        return drift.KSWIN(seed=seed)
    if method == "ddm":
        # river's default warm start (30) alarms on the noise of the first errors; wait longer.
        return binary.DDM(warm_start=ddm_warm_start)
    raise ValueError(f"unknown error-stream detector {method!r}; expected one of {ERROR_DETECTORS}")


class ErrorStreamDetector(Detector):
    """A river drift detector on the error stream, summarised per window."""

    def __init__(self, method: str, *, adwin_delta: float = 0.002, seed: int = 0,
                 ddm_warm_start: int = 500) -> None:
        super().__init__()
        self.method = method
        self.name = f"concept.{method}"  # type: ignore[misc]
        self._kw = {"adwin_delta": adwin_delta, "seed": seed, "ddm_warm_start": ddm_warm_start}
        self._river = _make_river(method, **self._kw)
        self._clear_window()
        self.seen = 0

    def _clear_window(self) -> None:
        self.n = 0
        self.error_sum = 0.0
        self.detections = 0
        self.positions: list[int] = []

    def update(self, error: float) -> None:  # type: ignore[override]
        self._river.update(error)
        self.seen += 1
        self.n += 1
        self.error_sum += error
        if self._river.drift_detected:
            # Sticky: stays True until the window closes, then reflects that window's verdict.
            self._drift = True
            self.detections += 1
            if len(self.positions) < _MAX_POSITIONS:
                self.positions.append(self.seen)  # 1-based index in the whole error stream

    def close_window(self) -> tuple[DetectorResult, ...]:
        mean = self.error_sum / self.n if self.n else 0.0
        res = DetectorResult(self.name, "error", "changes", float(self.detections), None, None,
                             self.detections > 0, 0, self.n,
                             (("mean_error", mean), ("positions", tuple(self.positions))))
        self._drift = self.detections > 0
        self._clear_window()
        return self._judge((res,))

    def get_state(self) -> dict[str, Any]:
        # river detectors have no state API; they pickle cleanly on river 0.21-0.26.
        return {"river": base64.b64encode(pickle.dumps(self._river)).decode(), "seen": self.seen,
                "n": self.n, "error_sum": self.error_sum, "detections": self.detections,
                "positions": self.positions, "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        self._river = pickle.loads(base64.b64decode(state["river"]))
        for k in ("seen", "n", "detections"):
            setattr(self, k, int(state[k]))
        self.error_sum = float(state["error_sum"])
        self.positions = list(state["positions"])
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self._river = _make_river(self.method, **self._kw)
        self._clear_window()
        self.seen = 0
        self._drift = False
        self._verdicts = {}


def infer_task(prediction: Any, label: Any) -> str:
    """'classification' for labels/classes/scores, 'regression' when both are real numbers."""
    if isinstance(label, (str, bool)) or isinstance(prediction, (str, bool, dict, list)):
        return "classification"
    if isinstance(label, int) and isinstance(prediction, int):
        return "classification"
    return "regression"


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list) and len(v) == 1:
        return _as_float(v[0])
    return None


class PerformanceDetector(Detector):
    """Per-window performance from (prediction, label) pairs; ``error_of`` feeds river."""

    name = "performance"

    def __init__(self, task: str = "auto", *, positive_label: str = "1", min_samples: int = 100,
                 degradation: float = 0.1, baseline: dict[str, float] | None = None) -> None:
        super().__init__()
        self.task = task
        # Expected metrics (e.g. from validation); else the first full window sets them.
        self._configured_baseline = dict(baseline or {})
        self._configured_task = task
        self.positive = positive_label
        self.min_samples = min_samples
        self.degradation = degradation
        self.baseline: dict[str, float] = dict(self._configured_baseline)
        self._clear_window()

    def _clear_window(self) -> None:
        self.n = 0
        self.correct = 0
        self.confusion: dict[str, int] = {}  # "true\x1fpred" -> count, bounded by class count
        self.pos_hist = [0] * _AUC_BINS
        self.neg_hist = [0] * _AUC_BINS
        self.abs_sum = 0.0
        self.sq_sum = 0.0

    def error_of(self, prediction: Any, label: Any, outputs: dict[str, Any] | None = None) -> float | None:
        """0/1 error (classifier) or absolute error (regressor); None if not comparable.
        ``outputs`` is ``prediction_features(prediction)`` if the caller has it already."""
        task = self.task if self.task != "auto" else infer_task(prediction, label)
        if task == "regression":
            p, y = _as_float(prediction), _as_float(label)
            return None if p is None or y is None else abs(p - y)
        pred = (prediction_features(prediction) if outputs is None else outputs).get("prediction")
        return None if pred is None else float(category_key(pred) != category_key(label))

    def update(self, prediction: Any, label: Any,  # type: ignore[override]
               outputs: dict[str, Any] | None = None) -> None:
        if self.task == "auto":
            self.task = infer_task(prediction, label)  # fixed at the first pair, then stable
        if self.task == "regression":
            p, y = _as_float(prediction), _as_float(label)
            if p is None or y is None:
                return
            self.n += 1
            self.abs_sum += abs(p - y)
            self.sq_sum += (p - y) ** 2
            return
        feats = prediction_features(prediction) if outputs is None else outputs
        pred = feats.get("prediction")
        if pred is None or label is None:
            return
        t, pk = category_key(label), category_key(pred)
        self.n += 1
        self.correct += t == pk
        key = f"{t}\x1f{pk}"
        if key in self.confusion or len(self.confusion) < _MAX_CLASSES * _MAX_CLASSES:
            self.confusion[key] = self.confusion.get(key, 0) + 1
        score = None
        if isinstance(prediction, dict):
            score = prediction.get(self.positive)
        elif isinstance(prediction, float) and 0.0 <= prediction <= 1.0:
            score = prediction
        if isinstance(score, (int, float)):
            b = min(_AUC_BINS - 1, max(0, int(float(score) * _AUC_BINS)))
            (self.pos_hist if t == self.positive else self.neg_hist)[b] += 1

    def _metrics(self) -> dict[str, float]:
        if self.task == "regression":
            return {"mae": self.abs_sum / self.n, "rmse": math.sqrt(self.sq_sum / self.n)}
        out = {"accuracy": self.correct / self.n}
        tp: dict[str, int] = {}
        fp: dict[str, int] = {}
        fn: dict[str, int] = {}
        for key, c in self.confusion.items():
            t, p = key.split("\x1f")
            if t == p:
                tp[t] = tp.get(t, 0) + c
            else:
                fp[p] = fp.get(p, 0) + c
                fn[t] = fn.get(t, 0) + c
        classes = set(tp) | set(fp) | set(fn)

        def f1(c: str) -> float:
            denom = 2 * tp.get(c, 0) + fp.get(c, 0) + fn.get(c, 0)
            return 2 * tp.get(c, 0) / denom if denom else 0.0

        binary = len(classes) <= 2 and self.positive in classes
        out["f1"] = f1(self.positive) if binary else sum(map(f1, classes)) / max(1, len(classes))
        npos, nneg = sum(self.pos_hist), sum(self.neg_hist)
        if npos and nneg:
            # P(score+ > score-) + half the ties (same bin), from the two score histograms.
            below = auc = 0.0
            for pc, nc in zip(self.pos_hist, self.neg_hist):
                auc += pc * (below + 0.5 * nc)
                below += nc
            out["roc_auc"] = auc / (npos * nneg)
        return out

    def close_window(self) -> tuple[DetectorResult, ...]:
        if self.n < self.min_samples:
            self._clear_window()
            return ()
        metrics = self._metrics()
        for k, v in metrics.items():
            self.baseline.setdefault(k, v)
        out = []
        for stat, value in metrics.items():
            base = self.baseline.get(stat)
            lower_is_better = stat in ("mae", "rmse")
            thr = None if base is None else (base * (1 + self.degradation) if lower_is_better
                                             else base * (1 - self.degradation))
            drift = thr is not None and (value > thr if lower_is_better else value < thr)
            out.append(DetectorResult(self.name, "model", stat, value, None, thr, drift, 0, self.n,
                                      (("task", self.task), ("baseline", base))))
        self._drift = any(r.drift for r in out)
        self._clear_window()
        return self._judge(out)  # one verdict for the model: any metric degraded

    def get_state(self) -> dict[str, Any]:
        return {"task": self.task, "baseline": self.baseline, "n": self.n, "correct": self.correct,
                "confusion": self.confusion, "pos": self.pos_hist, "neg": self.neg_hist,
                "abs": self.abs_sum, "sq": self.sq_sum, "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        self.task = state["task"]
        self.baseline = dict(state["baseline"])
        self.n, self.correct = int(state["n"]), int(state["correct"])
        self.confusion = dict(state["confusion"])
        self.pos_hist, self.neg_hist = list(state["pos"]), list(state["neg"])
        self.abs_sum, self.sq_sum = float(state["abs"]), float(state["sq"])
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self._clear_window()
        self.task = self._configured_task
        self.baseline = dict(self._configured_baseline)
        self._drift = False
        self._verdicts = {}
