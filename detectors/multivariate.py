"""Multivariate drift with a domain classifier (numpy + scikit-learn).

Univariate tests miss changes in how features move together (a correlation that flips while
every marginal stays put). The domain classifier learns to tell reference rows from current
rows: a cross-validated ROC AUC near 0.5 means "indistinguishable", well above means drift.
Memory is bounded: a fixed reference sample and a reservoir sample of the window
(``sample_size`` rows each); an update is O(1) except when the reservoir takes the row.

>>> import random
>>> from driftline.detectors.config import MultivariateSettings
>>> rnd = random.Random(0)
>>> ref = [{"a": (x := rnd.gauss(0, 1)), "b": x + rnd.gauss(0, 0.1)} for _ in range(400)]
>>> det = DomainClassifierDetector(ref, MultivariateSettings(enabled=True, sample_size=400), min_samples=100)
>>> for _ in range(400): det.update({"a": (x := rnd.gauss(0, 1)), "b": -x + rnd.gauss(0, 0.1)})
>>> det.close_window()[0].drift
True
"""

from __future__ import annotations

import math
import random
from typing import Any, Collection, Mapping, Sequence

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.config import MultivariateSettings
from driftline.detectors.histogram import category_key

__all__ = ["RowEncoder", "DomainClassifierDetector"]


class RowEncoder:
    """Feature dicts -> float vectors: numbers as is, categories as reference codes, NaN if missing."""

    def __init__(self, reference_rows: Sequence[Mapping[str, Any]], exclude: Collection[str] = ()) -> None:
        names: dict[str, None] = {}
        for row in reference_rows:
            names.update(dict.fromkeys(row))
        # An id column alone separates reference from window perfectly (AUC ~ 1 every window).
        self.names = tuple(sorted(n for n in names if n not in exclude))
        self.codes: dict[str, dict[str, int]] = {}
        for name in self.names:
            vals = [r.get(name) for r in reference_rows]
            if any(isinstance(v, (str, bool)) for v in vals):
                cats = sorted({category_key(v) for v in vals if v is not None})
                self.codes[name] = {c: i for i, c in enumerate(cats)}

    def encode(self, features: Mapping[str, Any]) -> list[float]:
        out = []
        for name in self.names:
            v = features.get(name)
            codes = self.codes.get(name)
            if v is None:
                out.append(math.nan)
            elif codes is not None:
                out.append(float(codes.get(category_key(v), len(codes))))  # unseen: its own code
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
            else:
                out.append(math.nan)
        return out


class DomainClassifierDetector(Detector):
    """Reference vs. window classifier; drift when cross-validated AUC >= ``auc_threshold``."""

    name = "multivariate.domain_classifier"

    def __init__(self, reference_rows: Sequence[Mapping[str, Any]], settings: MultivariateSettings, *,
                 min_samples: int = 100, exclude: Collection[str] = ()) -> None:
        super().__init__()
        self.settings = settings
        self.min_samples = min_samples
        self.encoder = RowEncoder(reference_rows, exclude)
        self.reference = [self.encoder.encode(r) for r in reference_rows[: settings.sample_size]]
        self._rng = random.Random(settings.seed)
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.sample: list[list[float]] = []

    def update(self, features: Mapping[str, Any]) -> None:  # type: ignore[override]
        self.n += 1
        k = self.settings.sample_size
        if len(self.sample) < k:
            self.sample.append(self.encoder.encode(features))
        else:
            j = self._rng.randrange(self.n)  # reservoir sampling (Algorithm R)
            if j < k:
                self.sample[j] = self.encoder.encode(features)

    def _auc(self) -> float:
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        x = np.asarray(self.reference + self.sample, dtype=float)
        y = np.r_[np.zeros(len(self.reference)), np.ones(len(self.sample))]
        clf = HistGradientBoostingClassifier(max_iter=50, random_state=self.settings.seed)
        cv = StratifiedKFold(self.settings.folds, shuffle=True, random_state=self.settings.seed)
        proba = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
        return float(roc_auc_score(y, proba))

    def close_window(self) -> tuple[DetectorResult, ...]:
        out: tuple[DetectorResult, ...] = ()
        n1, n2 = len(self.reference), len(self.sample)
        if self.n >= self.min_samples and n1 >= 20 and n2 >= 20:
            auc = self._auc()
            # Mann-Whitney normal approximation: how unlikely this AUC is if nothing changed.
            z = (auc - 0.5) / math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))
            p = 0.5 * math.erfc(z / math.sqrt(2))
            thr = self.settings.auc_threshold
            out = (DetectorResult(self.name, "*", "roc_auc", auc, p, thr, auc >= thr, n1, self.n,
                                  (("sample", n2), ("features", len(self.encoder.names)))),)
        self._drift = bool(out and out[0].drift)
        self._clear()
        return self._judge(out)

    def get_state(self) -> dict[str, Any]:
        st = self._rng.getstate()
        return {"n": self.n, "sample": self.sample, "rng": [st[0], list(st[1]), st[2]], "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        self.n = int(state["n"])
        width = len(self.encoder.names)
        # Rows encoded before the feature set changed (a new exclusion) cannot be mixed in.
        self.sample = [list(r) for r in state["sample"] if len(r) == width]
        a, b, c = state["rng"]
        self._rng.setstate((a, tuple(b), c))
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self._clear()
        self._rng = random.Random(self.settings.seed)
        self._drift = False
        self._verdicts = {}
