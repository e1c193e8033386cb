"""DLE's loss models: gradient-boosted trees of |error| and error^2 from features + prediction.

:func:`fit_loss_model` splits the labelled reference (70 % / 30 %, seeded), fits two
scikit-learn ``HistGradientBoostingRegressor`` on the first part (features and the model's
prediction -> absolute error, -> squared error) and measures on the held-out part how far a row's
realised loss strays from its predicted loss. The trees are then copied into flat node tables and
evaluated by :class:`LossModel` with numpy, for three reasons: the state is JSON (base64 of
little-endian arrays, no pickle: loading a state cannot run code and does not depend on the
sklearn version), a restored model gives bit-identical estimates, and one window costs a few
vectorised steps per tree level, all trees at once.

The band. A window's realised MAE is the mean of n row losses; given the rows' features the
losses are independent with means ``m_i`` (the model) and variances that grow with the loss
itself (heteroscedastic noise), modelled as ``c * m_i^2`` where ``c`` is the held-out ratio
``mean((loss - m)^2) / mean(m^2)``. So ``sd(MAE) = sqrt(c * sum(m_i^2)) / n``, the same for the
mean squared error, and the RMSE band is the square root of the MSE band. The held-out ratio
also absorbs the loss model's own row-level error.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

__all__ = ["LossModel", "Trees", "fit_loss_model", "HOLDOUT_SHARE"]

HOLDOUT_SHARE = 0.3
# Shallow trees: the loss surface is smooth and a window is evaluated level by level, so the
# depth bounds the cost of an estimate.
_TREE = dict(max_iter=100, max_depth=4, learning_rate=0.1, min_samples_leaf=20, early_stopping=False)


def _pack(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unpack(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()


class Trees:
    """An additive ensemble of binary trees as flat node tables (leaves point to themselves)."""

    _FIELDS = (("feature", "<i4"), ("threshold", "<f8"), ("missing_left", "u1"), ("left", "<i4"),
               ("right", "<i4"), ("value", "<f8"), ("roots", "<i4"))

    def __init__(self, feature, threshold, missing_left, left, right, value, roots, depth: int,
                 baseline: float) -> None:
        self.feature, self.threshold = np.asarray(feature), np.asarray(threshold)
        self.missing_left = np.asarray(missing_left).astype(bool)
        self.left, self.right = np.asarray(left), np.asarray(right)
        self.value, self.roots = np.asarray(value), np.asarray(roots)
        self.depth, self.baseline = int(depth), float(baseline)

    @classmethod
    def from_sklearn(cls, model: HistGradientBoostingRegressor) -> "Trees":
        parts, roots, offset, depth = [], [], 0, 0
        for (tree,) in model._predictors:  # one output: one tree per iteration
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            own = np.arange(len(nodes))
            leaf = nodes["is_leaf"].astype(bool)
            left = np.where(leaf, own, nodes["left"].astype(np.int64)) + offset
            right = np.where(leaf, own, nodes["right"].astype(np.int64)) + offset
            parts.append((nodes["feature_idx"], nodes["num_threshold"], nodes["missing_go_to_left"],
                          left, right, nodes["value"]))
            roots.append(offset)
            offset += len(nodes)
            depth = max(depth, int(nodes["depth"].max()))
        cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
        return cls(*cols, np.asarray(roots), depth, float(np.ravel(model._baseline_prediction)[0]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Sum of the trees' leaf values plus the baseline for each row of ``x`` (sklearn's rule:
        NaN goes the node's missing side, else ``x <= threshold`` goes left)."""
        n = x.shape[0]
        idx = np.repeat(self.roots[:, None], n, axis=1)  # (trees, rows)
        rows = np.arange(n)[None, :]
        for _ in range(self.depth):
            xv = x[rows, self.feature[idx]]
            nan = np.isnan(xv)
            with np.errstate(invalid="ignore"):
                go_left = np.where(nan, self.missing_left[idx], xv <= self.threshold[idx])
            idx = np.where(go_left, self.left[idx], self.right[idx])
        return self.value[idx].sum(axis=0) + self.baseline

    def to_state(self) -> dict:
        state: dict[str, Any] = {name: _pack(getattr(self, name), dt) for name, dt in self._FIELDS}
        state.update(depth=self.depth, baseline=self.baseline)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Trees":
        arrays = [_unpack(state[name], dt) for name, dt in cls._FIELDS]
        return cls(*arrays, depth=state["depth"], baseline=state["baseline"])


class LossModel:
    """The two loss models and the held-out spread ratios of the band (see the module docstring)."""

    def __init__(self, abs_trees: Trees, sq_trees: Trees, c_abs: float, c_sq: float, n_features: int) -> None:
        self.abs_trees, self.sq_trees = abs_trees, sq_trees
        self.c_abs, self.c_sq = float(c_abs), float(c_sq)
        self.n_features = int(n_features)

    def row_losses(self, x: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected absolute and squared error of each row."""
        xp = np.column_stack([x, pred])
        return (np.maximum(self.abs_trees.predict(xp), 0.0), np.maximum(self.sq_trees.predict(xp), 0.0))

    def window(self, x: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
        """(MAE, sd of the realised MAE, MSE, sd of the realised MSE) of a window."""
        m_abs, m_sq = self.row_losses(x, pred)
        n = len(pred)
        return (float(m_abs.mean()), math.sqrt(self.c_abs * float(np.sum(m_abs ** 2))) / n,
                float(m_sq.mean()), math.sqrt(self.c_sq * float(np.sum(m_sq ** 2))) / n)

    def to_state(self) -> dict:
        return {"abs": self.abs_trees.to_state(), "sq": self.sq_trees.to_state(), "c_abs": self.c_abs,
                "c_sq": self.c_sq, "n_features": self.n_features}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "LossModel":
        return cls(Trees.from_state(state["abs"]), Trees.from_state(state["sq"]), state["c_abs"], state["c_sq"],
                   state["n_features"])


def _spread_ratio(loss: np.ndarray, m: np.ndarray) -> float:
    denom = float(np.mean(m ** 2))
    return float(np.mean((loss - m) ** 2)) / denom if denom > 0 else 0.0


def fit_loss_model(x: np.ndarray, pred: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LossModel:
    """Fit the |error| and error^2 models on 70 % of the labelled rows, the band's spread ratios on
    the other 30 %."""
    xp = np.column_stack([x, pred])
    err = pred - y
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(round(len(y) * (1 - HOLDOUT_SHARE)))
    fit, held = order[:cut], order[cut:]
    models = []
    # one thread: a fit runs beside the collector's other work, and OpenMP's busy-waiting threads
    # on a shared host made it 5x slower, not faster
    with threadpool_limits(limits=1):
        for target in (np.abs(err), err ** 2):
            hgb = HistGradientBoostingRegressor(random_state=seed, **_TREE).fit(xp[fit], target[fit])
            models.append(Trees.from_sklearn(hgb))
    abs_trees, sq_trees = models
    m_abs = np.maximum(abs_trees.predict(xp[held]), 0.0)
    m_sq = np.maximum(sq_trees.predict(xp[held]), 0.0)
    return LossModel(abs_trees, sq_trees, _spread_ratio(np.abs(err[held]), m_abs),
                     _spread_ratio(err[held] ** 2, m_sq), x.shape[1])
