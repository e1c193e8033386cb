"""A performance estimator fitted on labelled rows, kept as JSON with the reference it came with.

The estimators themselves (CBPE, DLE) are :mod:`driftline.detectors.estimation`; this module puts
logged predictions into their shape and back:

* a classifier that logs class probabilities (``{"yes": 0.8, "no": 0.2}``, a list summing to 1,
  or a binary ``P(positive)`` float with 0/1-like labels) gets CBPE; its score vector follows the
  estimator's ``classes`` (a binary float is the probability of the last of the sorted classes);
* a regressor (numeric predictions and labels) gets DLE, on the reference's numeric (and boolean)
  input features, in the order saved with it; a feature missing from an event is NaN.

:func:`fit_estimator` returns the JSON-able :class:`~driftline.detectors.reference.Reference`
``estimator`` field; :class:`Fitted` loads one back for the windows.

>>> preds = [{"no": 1 - p, "yes": p} for p in (0.1, 0.9, 0.2, 0.8) * 60]
>>> info = fit_estimator(preds, ["no", "yes", "yes", "yes"] * 60, min_labels=100)
>>> info["method"], info["classes"], info["labelled"]
('cbpe', ['no', 'yes'], 240)
>>> Fitted(info).row({"no": 0.3, "yes": 0.7}, {})  # binary: P(classes[1]) alone, a float
0.7
"""

from __future__ import annotations

import json
import math
import operator
from itertools import repeat
from typing import Any, Mapping, Sequence

__all__ = ["fit_estimator", "Fitted", "estimator_method", "scores_of", "positive_score", "is_number"]

_PROB_TOLERANCE = 0.01
_BINARY_LABELS = frozenset(("0", "1", "True", "False", "true", "false"))
_DICT, _FLOAT, _STR_INT = {dict}, {float}, frozenset((str, int))


def _parse(value: Any) -> Any:
    # A CSV reference holds a dict or list prediction as its JSON text.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def is_number(v: Any) -> bool:
    """A finite int or float, not a bool: what a regressor's prediction and label must be."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _label_key(label: Any) -> str | None:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return None
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def scores_of(prediction: Any, classes: Sequence[str]) -> list[float] | None:
    """The class probabilities of one logged prediction in ``classes`` order (None: not scores).

    Runs for every prediction: the common case (a dict of floats) takes no generic path.
    """
    k = len(classes)
    if type(prediction) is str:
        prediction = _parse(prediction)
    if type(prediction) is dict or isinstance(prediction, Mapping):  # the ABC check is slow
        get = prediction.get
        row = [get(c, 0.0) for c in classes]
    elif isinstance(prediction, (list, tuple)) and len(prediction) == k:
        row = list(prediction)
    elif k == 2 and is_number(prediction) and 0.0 <= float(prediction) <= 1.0:
        return [1.0 - float(prediction), float(prediction)]
    else:
        return None
    for v in row:
        t = type(v)
        if (t is not float and t is not int) or not -1e-9 <= v <= 1 + 1e-9:  # NaN fails the range
            return None
    if abs(sum(row) - 1.0) > _PROB_TOLERANCE:
        return None
    return row


def positive_score(prediction: Any, classes: Sequence[str]) -> float | None:
    """P(``classes[1]``) of a binary model's logged prediction, with :func:`scores_of`'s checks
    (None: not scores). Runs for every prediction and label of a binary model: a dict of two
    floats, the common case, builds no list (:class:`Fitted` keeps it as ``score``)."""
    return _positive_score_of(classes[0], classes[1])(prediction)


def _positive_score_of(neg: str, pos: str) -> Any:
    """:func:`positive_score` for the classes ``[neg, pos]``, as one call per event."""
    lo, hi = -_PROB_TOLERANCE, _PROB_TOLERANCE  # abs(x) <= tol without the call (NaN fails both)
    def score(prediction: Any) -> float | None:
        if type(prediction) is dict:
            a, b = prediction.get(neg, 0.0), prediction.get(pos, 0.0)
            if type(a) is float and type(b) is float:  # the common case: no calls (float(b) is b)
                if -1e-9 <= a <= 1 + 1e-9 and -1e-9 <= b <= 1 + 1e-9 and lo <= a + b - 1.0 <= hi:
                    return b
                return None
            ta, tb = type(a), type(b)
            if ((ta is float or ta is int) and (tb is float or tb is int) and -1e-9 <= a <= 1 + 1e-9
                    and -1e-9 <= b <= 1 + 1e-9 and abs(a + b - 1.0) <= _PROB_TOLERANCE):
                return float(b)
            return None
        row = scores_of(prediction, (neg, pos))
        return None if row is None else float(row[1])
    return score


def estimator_method(predictions: Sequence[Any], labels: Sequence[Any]) -> str:
    """'cbpe' when the predictions are class probabilities, 'dle' for numeric predictions and
    labels; :class:`~driftline.detectors.estimation.EstimationError` saying why otherwise."""
    from driftline.detectors.estimation import EstimationError

    preds = [_parse(p) for p in predictions if p is not None]
    if not preds:
        raise EstimationError("no predictions to fit a performance estimator on")
    if all(isinstance(p, (Mapping, list, tuple)) for p in preds):
        return "cbpe"
    if all(is_number(p) for p in preds):
        keys = {_label_key(y) for y in labels} - {None}
        if keys <= _BINARY_LABELS and all(0.0 <= float(p) <= 1.0 for p in preds):
            return "cbpe"
        if all(is_number(y) for y in labels if _label_key(y) is not None):
            return "dle"
    raise EstimationError("the predictions are neither class probabilities (a dict or list of "
                          "probabilities per class, or P(positive) with 0/1 labels) nor numbers "
                          "with numeric labels: no performance estimator for them")


def _classes(predictions: Sequence[Any], labels: Sequence[Any]) -> list[str]:
    names: set[str] = {k for k in map(_label_key, labels) if k is not None}
    k = 0
    for p in map(_parse, predictions):
        if isinstance(p, Mapping):
            names.update(map(str, p))
        elif isinstance(p, (list, tuple)):
            k = max(k, len(p))
    if k:  # list scores: the classes are the positions (prediction_features names them so too)
        names = {str(i) for i in range(k)} | names
    if len(names) == 1 and names <= _BINARY_LABELS:
        names |= {"0", "1"} if names <= {"0", "1"} else {"False", "True"}
    return sorted(names)


def _numeric_features(features: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, bool] = {}
    for f in features:
        for k, v in f.items():
            ok = v is None or isinstance(v, bool) or is_number(v)
            names[k] = names.get(k, True) and ok
    return sorted(k for k, ok in names.items() if ok)


def _feature_row(feats: Mapping[str, Any], names: Sequence[str]) -> list[float]:
    out = []
    for k in names:
        v = feats.get(k)
        out.append(float(v) if isinstance(v, bool) or is_number(v) else float("nan"))
    return out


def fit_estimator(predictions: Sequence[Any], labels: Sequence[Any],
                  features: Sequence[Mapping[str, Any]] | None = None, *, level: float = 0.95,
                  min_labels: int = 200, seed: int = 0) -> dict[str, Any]:
    """Fit CBPE or DLE (see :func:`estimator_method`) on labelled rows; the JSON to store.

    ``labels`` may hold None for unlabelled rows (they are left out). Raises
    :class:`~driftline.detectors.estimation.EstimationError` with the reason when no estimator
    can be fitted (too few labels, scores that are not probabilities, ...).
    """
    from driftline.detectors import estimation as E

    method = estimator_method(predictions, labels)
    if method == "cbpe":
        classes = _classes(predictions, labels)
        rows, ys = [], []
        for p, y in zip(predictions, labels):
            row = scores_of(p, classes)
            if row is None:
                raise E.EstimationError("a prediction is not a probability per class (they must sum to 1)")
            rows.append(row)
            ys.append(_label_key(y))
        est: Any = E.CBPE.fit(rows, ys, classes, level=level, min_labels=min_labels)
        keep = [i for i, y in enumerate(ys) if y is not None]
        ref = E.realised_classification([rows[i] for i in keep], [ys[i] for i in keep], classes)
        return {"method": method, "state": est.to_state(), "classes": classes, "features": [],
                "labelled": est.reference_rows, "reference_metrics": _finite(ref)}
    if features is None:
        raise E.EstimationError("DLE needs the input features of the labelled rows")
    names = _numeric_features(features)
    if not names:
        raise E.EstimationError("DLE needs numeric input features; the labelled rows have none")
    x = [_feature_row(f, names) for f in features]
    y = [float(v) if is_number(v) else float("nan") for v in labels]
    pred = [float(p) for p in predictions]
    est = E.DLE.fit(x, pred, y, level=level, min_labels=min_labels, seed=seed)
    keep = [i for i, v in enumerate(y) if math.isfinite(v)]
    ref = E.realised_regression([pred[i] for i in keep], [y[i] for i in keep])
    return {"method": method, "state": est.to_state(), "classes": [], "features": names,
            "labelled": est.reference_rows, "reference_metrics": _finite(ref)}


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


class Fitted:
    """A stored estimator, loaded: turns events into rows and windows of rows into estimates."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        from driftline.detectors import estimation as E

        self.info = info
        self.method: str = info["method"]
        self.classes: list[str] = list(info.get("classes") or ())
        self.features: list[str] = list(info.get("features") or ())
        self.labelled = int(info.get("labelled", 0))
        self.reference_metrics: dict[str, float] = dict(info.get("reference_metrics") or {})
        self.model: Any = (E.CBPE if self.method == "cbpe" else E.DLE).from_state(info["state"])
        self._names = frozenset(self.classes)
        #: CBPE's :meth:`label` of a str or int label (not a bool: True == 1), as one dict look-up
        #: per label event: each class name, and the int whose str() it is (DLE: None)
        self.label_of: dict[Any, str] | None = {c: c for c in self.classes} if self.method == "cbpe" else None
        for c in list(self.label_of or ()):
            try:
                i = int(c)
            except ValueError:
                continue
            if str(i) == c:
                self.label_of[i] = c  # type: ignore[index]
        #: what a window keeps of a prediction when no features are needed (CBPE; DLE's grading
        #: keeps the prediction alone): :meth:`row` without the method dispatch, per event
        self.score: Any = (_positive_score_of(*self.classes) if len(self.classes) == 2
                           else (lambda p: scores_of(p, self.classes)) if self.method == "cbpe"
                           else (lambda p: [float(p)] if is_number(p) else None))

    def score_many(self, predictions: list[Any]) -> tuple[list[Any], bool]:
        """:attr:`score` of each prediction (None where it has none), and whether every one has
        one. A binary model's dicts of two floats, the stream's case, are checked as arrays
        (:func:`positive_score`'s checks, the same comparisons); anything else, or any row that
        fails them, is scored one by one as before."""
        if len(self.classes) == 2 and self.method == "cbpe" and predictions:
            neg, pos = self.classes
            if set(map(type, predictions)) == _DICT:
                a = list(map(dict.get, predictions, repeat(neg), repeat(0.0)))
                b = list(map(dict.get, predictions, repeat(pos), repeat(0.0)))
                if set(map(type, a)) == _FLOAT and set(map(type, b)) == _FLOAT:
                    import numpy as np

                    n = len(a)
                    x, y = np.fromiter(a, float, n), np.fromiter(b, float, n)
                    s = x + y - 1.0
                    top = 1 + 1e-9
                    if ((-1e-9 <= x) & (x <= top) & (-1e-9 <= y) & (y <= top)
                            & (-_PROB_TOLERANCE <= s) & (s <= _PROB_TOLERANCE)).all():
                        return b, True  # P(positive): the logged floats themselves
        rows = list(map(self.score, predictions))
        return rows, None not in rows

    def labels_many(self, labels: list[Any]) -> list[Any]:
        """Each label as the realised metrics take it (None: not usable): a str or int label by
        :attr:`label_of`, the rest by :meth:`label`, as the stream does one label at a time."""
        label_of = self.label_of
        if label_of is not None and set(map(type, labels)) <= _STR_INT:
            return list(map(label_of.get, labels))
        return [label_of.get(y) if label_of is not None and type(y) in _STR_INT else self.label(y) for y in labels]

    @property
    def metrics(self) -> tuple[str, ...]:
        from driftline.detectors import estimation as E

        return E.CLASSIFICATION_METRICS if self.method == "cbpe" else E.REGRESSION_METRICS

    def row(self, prediction: Any, features: Mapping[str, Any]) -> list[float] | float | None:
        """What a window keeps of one prediction (None: it cannot be estimated)."""
        if self.method == "cbpe":
            # A binary row is P(classes[1]) alone, a float: half the window's sample, in the saved
            # state too, and no list per prediction for the garbage collector to walk.
            return self.score(prediction)
        if not is_number(prediction):
            return None
        return [float(prediction), *_feature_row(features, self.features)]

    def label(self, label: Any) -> Any:
        """A label as the realised metrics take it (None: not usable)."""
        if self.method == "cbpe":
            t = type(label)
            if t is str:  # the common cases first: what _label_key gives for them
                return label if label in self._names else None
            if t is int:
                key = str(label)
                return key if key in self._names else None
            key = _label_key(label)
            return key if key in self.classes else None
        return float(label) if is_number(label) else None

    def estimate(self, rows: Sequence[Sequence[float]], level: float) -> dict[str, Any]:
        """Metric -> :class:`~driftline.detectors.estimation.Estimate` of the window's rows."""
        if self.method == "cbpe":
            return self.model.estimate(self._scores(rows), level=level)
        return self.model.estimate([r[1:] for r in rows], [r[0] for r in rows], level=level)

    def _scores(self, rows: Sequence[Sequence[float]]) -> Any:
        import numpy as np

        if len(self.classes) != 2:
            return rows
        # binary: floats; a state saved before them holds [P(classes[1])] rows (first column)
        try:
            return np.fromiter(rows, float, len(rows))  # asarray's numbers, without its shape discovery
        except (TypeError, ValueError):  # rows that are lists: asarray as before
            pass
        try:
            p = np.asarray(rows, dtype=float)
        except ValueError:  # both kinds in one window (a restart mid-window)
            return [r if type(r) is float else r[0] for r in rows]
        return p[:, 0] if p.ndim == 2 else p

    def realised(self, rows: Sequence[Sequence[float]], labels: Sequence[Any]) -> dict[str, float]:
        from driftline.detectors import estimation as E

        if self.method == "cbpe":
            p = self._scores(rows)
            if len(self.classes) == 2 and type(p) is not list and len(p) == len(labels) and len(p):
                import numpy as np

                # The stream's case: P(classes[1]) in [0, 1] (NaN fails) and labels that are the
                # class names (what label() keeps): realised_classification's numbers, without
                # its checks and label codes. Anything else takes the general path, as before.
                neg, pos = self.classes
                yes = np.fromiter(map(operator.eq, labels, repeat(pos)), bool, len(labels))
                if (0.0 <= p.min() and p.max() <= 1.0
                        and labels.count(neg) + int(np.count_nonzero(yes)) == len(labels)):
                    return E.realised_positive(p, yes)
            return E.realised_classification(p, labels, self.classes)
        return E.realised_regression([r[0] for r in rows], labels)
