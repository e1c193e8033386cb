"""DLE's loss models: gradient-boosted trees of |error| and error^2 from features + prediction.

:func:`fit_loss_model` fits two scikit-learn ``HistGradientBoostingRegressor`` on the labelled
reference (features and the model's prediction -> absolute error, -> squared error) and measures,
by cross-fitting on two halves, how far a row's realised loss strays from its predicted loss. The trees are then copied into flat node tables and
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

The reference's term. The trees learn the losses' level from the reference's ``N`` rows, so their
sampling error is shared by every row of every window: over 10 seeds of the benchmark's synthetic
regression each seed's estimates were off by a common -.024 .. +.021 in the stable windows (the
band's sd .029), and the MAE band covered 89 %. Taken like the window's own term but over the
reference, it adds ``c * sum(m_i^2) / (n * N)`` to the variance: the sd grows by
``sqrt(1 + n / N)`` (1.10 for 1,000-row windows on 5,000 reference rows).

Extrapolation. Trees predict flat beyond the last split: a row with any input (or prediction)
outside the reference's range gets the loss of the reference's edge, whatever its true loss is.
That error is shared by such rows (they left the range in the same direction) and does not
average out, so the band adds ``share_out * s`` to the standard deviation (in quadrature), where
``share_out`` is the window's share of rows outside the range and ``s`` the standard deviation of
the fitted model's row losses on the reference: how far the loss is known to move across the
inputs it has seen. On scikit-learn's diabetes windows (covariate shift on BMI, up to 35 % of the
rows outside a 221-row reference) this lifted the MAE band's coverage from 85 % to 92 % at 95 %;
inside the range the band is unchanged.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

__all__ = ["LossModel", "Trees", "fit_loss_model", "FOLDS"]

FOLDS = 2  # cross-fitting folds of the spread ratios
# Shallow trees: the loss surface is smooth and a window is evaluated level by level, so the
# depth bounds the cost of an estimate. One level deeper on a reference of DEEP_ROWS labelled rows
# or more (each cross-fitting half then has 500 rows or more for 16 leaves of >= 20): over 10
# seeds of the benchmark's synthetic regression (5,000 rows) depth 4 lowered the MAE estimate's
# error on 9 of 10 (.0296 -> .0285; NannyML's LightGBM .0283) for ~25 % more estimate CPU, while
# on diabetes (221 rows) it raised it (4.90 -> 5.03, within noise): too few rows for the leaves.
_TREE = dict(max_iter=50, max_depth=3, learning_rate=0.15, min_samples_leaf=20, early_stopping=False)
DEEP_ROWS = 1000


def _pack(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unpack(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()


class Trees:
    """An additive ensemble of binary trees as flat node tables, laid out so that a split's right
    child is its left child + 1 and a leaf is its own left child with threshold +inf: one step
    down every tree at once is ``idx = left[idx] + (not x <= threshold[idx])``."""

    _FIELDS = (("feature", "<i4"), ("threshold", "<f8"), ("missing_left", "u1"), ("left", "<i4"),
               ("value", "<f8"), ("roots", "<i4"))

    def __init__(self, feature, threshold, missing_left, left, value, roots, depth: int,
                 baseline: float) -> None:
        self.feature, self.threshold = np.asarray(feature), np.asarray(threshold)
        self.missing_left = np.asarray(missing_left).astype(bool)
        self.left, self.value, self.roots = np.asarray(left), np.asarray(value), np.asarray(roots)
        self.depth, self.baseline = int(depth), float(baseline)

    @classmethod
    def from_sklearn(cls, model: HistGradientBoostingRegressor) -> "Trees":
        cols: list[list] = [[] for _ in range(5)]
        roots, depth = [], 0
        for (tree,) in model._predictors:  # one output: one tree per iteration
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            order, pos = [0], 0  # breadth first, children side by side
            while pos < len(order):
                nd = nodes[order[pos]]
                if not nd["is_leaf"]:
                    order += [int(nd["left"]), int(nd["right"])]
                pos += 1
            new = {old: i for i, old in enumerate(order)}
            base = sum(len(c) for c in cols[0]) if cols[0] else 0
            nd = nodes[order]
            leaf = nd["is_leaf"].astype(bool)
            left = np.array([base + (new[o] if lf else new[int(l)]) for o, lf, l in zip(order, leaf, nd["left"])])
            cols[0].append(np.where(leaf, 0, nd["feature_idx"]))
            cols[1].append(np.where(leaf, np.inf, nd["num_threshold"]))
            cols[2].append(np.where(leaf, 1, nd["missing_go_to_left"]))
            cols[3].append(left)
            cols[4].append(nd["value"])
            roots.append(base)
            depth = max(depth, int(nodes["depth"].max()))
        arrays = [np.concatenate(c) for c in cols]
        return cls(*arrays, np.asarray(roots), depth, float(np.ravel(model._baseline_prediction)[0]))

    @classmethod
    def concat(cls, parts: "list[Trees]") -> "Trees":
        """Many ensembles as one, to walk them all in one pass (the baseline is the first's)."""
        offsets = np.cumsum([0] + [len(t.left) for t in parts[:-1]])
        return cls(np.concatenate([t.feature for t in parts]), np.concatenate([t.threshold for t in parts]),
                   np.concatenate([t.missing_left for t in parts]),
                   np.concatenate([t.left + o for t, o in zip(parts, offsets)]),
                   np.concatenate([t.value for t in parts]),
                   np.concatenate([t.roots + o for t, o in zip(parts, offsets)]),
                   max(t.depth for t in parts), parts[0].baseline)

    def leaf_values(self, x: np.ndarray) -> np.ndarray:
        """(trees, rows) leaf value of each tree for each row of ``x`` (sklearn's rule: NaN goes
        the node's missing side, else ``x <= threshold`` goes left)."""
        n = x.shape[0]
        flat = np.ascontiguousarray(x.T).ravel()  # feature-major: feature f of row r at f * n + r
        rows = np.arange(n)[None, :]
        idx = np.repeat(self.roots[:, None], n, axis=1)
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            xv = flat[self.feature[idx] * n + rows]
            if has_nan:
                go_left = np.where(np.isnan(xv), self.missing_left[idx], xv <= self.threshold[idx])
            else:
                go_left = xv <= self.threshold[idx]
            idx = self.left[idx] + ~go_left
        return self.value[idx]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.leaf_values(x).sum(axis=0) + self.baseline

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

    def __init__(self, abs_trees: Trees, sq_trees: Trees, c_abs: float, c_sq: float, n_features: int, *,
                 lower: Any = None, upper: Any = None, s_abs: float = 0.0, s_sq: float = 0.0,
                 reference_rows: int = 0) -> None:
        self.abs_trees, self.sq_trees = abs_trees, sq_trees
        self.c_abs, self.c_sq = float(c_abs), float(c_sq)
        self.n_features = int(n_features)
        # the reference's range of each input and of the prediction; without it (a state saved
        # before the extrapolation term) every row counts as inside
        self.lower = _bound(lower, -np.inf, self.n_features + 1)
        self.upper = _bound(upper, np.inf, self.n_features + 1)
        self.s_abs, self.s_sq = float(s_abs), float(s_sq)
        # the labelled rows the trees were fitted on (0: a state saved before the reference's term)
        self.reference_rows = int(reference_rows)
        self._both = Trees.concat([abs_trees, sq_trees])  # one walk for the two models
        self._split = len(abs_trees.roots)

    def row_losses(self, x: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected absolute and squared error of each row."""
        leaves = self._both.leaf_values(np.column_stack([x, pred]))
        m_abs = leaves[: self._split].sum(axis=0) + self.abs_trees.baseline
        m_sq = leaves[self._split:].sum(axis=0) + self.sq_trees.baseline
        return np.maximum(m_abs, 0.0), np.maximum(m_sq, 0.0)

    def outside_share(self, x: np.ndarray, pred: np.ndarray) -> float:
        """The share of rows with an input or prediction outside the reference's range (NaN is
        a missing value the trees route, not outside)."""
        xp = np.column_stack([x, pred])
        return float(np.mean(((xp < self.lower) | (xp > self.upper)).any(axis=1)))

    def window(self, x: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
        """(MAE, sd of the realised MAE, MSE, sd of the realised MSE) of a window."""
        m_abs, m_sq = self.row_losses(x, pred)
        n = len(pred)
        out = self.outside_share(x, pred)
        # the window's rows and the reference's: sum(m^2) / n^2 * (1 + n / reference rows)
        grow = math.sqrt(1.0 + n / self.reference_rows) if self.reference_rows > 0 else 1.0
        return (float(m_abs.mean()),
                math.hypot(grow * math.sqrt(self.c_abs * float(np.sum(m_abs ** 2))) / n, out * self.s_abs),
                float(m_sq.mean()),
                math.hypot(grow * math.sqrt(self.c_sq * float(np.sum(m_sq ** 2))) / n, out * self.s_sq))

    def to_state(self) -> dict:
        return {"abs": self.abs_trees.to_state(), "sq": self.sq_trees.to_state(), "c_abs": self.c_abs,
                "c_sq": self.c_sq, "n_features": self.n_features, "s_abs": self.s_abs, "s_sq": self.s_sq,
                "reference_rows": self.reference_rows,
                # strict JSON: a column the reference never saw a value of (ends +inf / -inf) as null
                "lower": [float(v) if math.isfinite(v) else None for v in self.lower],
                "upper": [float(v) if math.isfinite(v) else None for v in self.upper]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "LossModel":
        return cls(Trees.from_state(state["abs"]), Trees.from_state(state["sq"]), state["c_abs"], state["c_sq"],
                   state["n_features"], lower=state.get("lower"), upper=state.get("upper"),
                   s_abs=state.get("s_abs", 0.0), s_sq=state.get("s_sq", 0.0),
                   reference_rows=state.get("reference_rows", 0))


def _bound(values: Any, open_end: float, size: int) -> np.ndarray:
    """One end of the reference's range per column. No values at all (a state saved before the
    range was kept) is open: every row inside. A None entry is a column the reference never saw
    a value of: its range is empty (``-open_end``), so any value there is outside."""
    if values is None:
        return np.full(size, open_end)
    return np.array([-open_end if v is None else v for v in values], dtype=float)


def _spread_ratio(loss: np.ndarray, m: np.ndarray) -> float:
    denom = float(np.mean(m ** 2))
    return float(np.mean((loss - m) ** 2)) / denom if denom > 0 else 0.0


def _fit_trees(xp: np.ndarray, target: np.ndarray, seed: int, depth: int) -> Trees:
    hgb = HistGradientBoostingRegressor(random_state=seed, **{**_TREE, "max_depth": depth}).fit(xp, target)
    return Trees.from_sklearn(hgb)


def fit_loss_model(x: np.ndarray, pred: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LossModel:
    """Fit the |error| and error^2 models on all the labelled rows; the band's spread ratios come
    from cross-fitting (each half's losses predicted by models fitted on the other half), so
    they hold the loss models' own error on rows they have not seen."""
    xp = np.column_stack([x, pred])
    err = pred - y
    targets = (np.abs(err), err ** 2)
    half = np.random.default_rng(seed).permutation(len(y)) % FOLDS
    depth = _TREE["max_depth"] + (len(y) >= DEEP_ROWS)  # the same depth for the halves and the whole
    held = [np.empty(len(y)), np.empty(len(y))]
    # one thread: a fit runs beside the collector's other work, and OpenMP's busy-waiting threads
    # on a shared host made it 5x slower, not faster
    with threadpool_limits(limits=1):
        for f in range(FOLDS):
            train, test = half != f, half == f
            for t, target in enumerate(targets):
                held[t][test] = np.maximum(_fit_trees(xp[train], target[train], seed, depth).predict(xp[test]), 0.0)
        abs_trees, sq_trees = (_fit_trees(xp, target, seed, depth) for target in targets)
    model = LossModel(abs_trees, sq_trees, _spread_ratio(targets[0], held[0]), _spread_ratio(targets[1], held[1]),
                      x.shape[1], lower=np.nanmin(np.where(np.isnan(xp), np.inf, xp), axis=0),
                      upper=np.nanmax(np.where(np.isnan(xp), -np.inf, xp), axis=0), reference_rows=len(y))
    m_abs, m_sq = model.row_losses(x, pred)
    model.s_abs, model.s_sq = float(np.std(m_abs)), float(np.std(m_sq))
    return model
