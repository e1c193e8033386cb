"""Multivariate drift by PCA reconstruction error: the cheap default (numpy + scipy).

A change in how features move together (a correlation that flips while every marginal stays
put) is invisible to per-feature tests. Principal components fitted on the reference span the
directions the data usually takes; a row's reconstruction error is its squared distance from
that subspace. When the joint distribution changes, rows leave the subspace and a window's mean
error rises.

How the reference is used, and why:

* **Rank-normal scores.** Each column is mapped through the reference's empirical CDF (mid-ranks,
  clipped to the reference's range) to a normal score, then standardised. Heavy tails, skew and
  integer values then look alike, so the error's null distribution does not depend on the
  marginal shapes (a Student-t(2) outlier moves a row by at most one reference quantile). A
  missing value scores 0 (the reference's centre).
* **Categories** become one-hot columns of their most frequent reference categories (at most
  ``top_categories``, and never every level, which would add an always-zero direction); the rest
  and missing values are all-zero. ``top_categories: 0`` leaves categorical features out.
* **Components**: the fewest explaining ``pca_variance`` of the variance, at most
  ``max_components`` and always leaving at least one residual direction.
* **Threshold from the reference itself.** In-sample errors are biased low (the components are
  fitted to those very rows), so the model is fitted on a random half of the reference rows and
  the other half's per-row errors are the null (see :func:`fit`). A window's score is the mean
  of its rows' cube-root errors (nearly normal, see :class:`Calibration`); it is drift when the
  score exceeds the reference half's by more than a one-sided test at ``alpha`` allows: a
  two-sample normal approximation with the reference's per-row variance, ``var (1/m + 1/n)``,
  and a Cornish-Fisher skewness term. ``alpha`` is the probability of a false verdict per
  stationary window, over references (one reference's own rate varies around it).
* **Cost.** ``update`` keeps the row's numbers and category codes in a bounded reservoir
  (``sample_size`` rows of floats; a batch's picked rows converted together); everything else
  happens once per window at close, column by column in numpy (an ``m x p`` table lookup and a
  projection onto the principal components).

Only the direction "error grew" is tested: a correlation that strengthens keeps rows in the
subspace; per-feature tests see marginal changes.

>>> import random
>>> from driftline.detectors.config import MultivariateSettings
>>> rnd = random.Random(0)
>>> def rows(n, sign):
...     return [{"a": (x := rnd.gauss(0, 1)), "b": sign * x + rnd.gauss(0, 0.5), "c": rnd.gauss(0, 1)}
...             for _ in range(n)]
>>> det = PCADriftDetector(rows(1000, 1), MultivariateSettings(), min_samples=100)
>>> for r in rows(500, 1): det.update(r)
>>> det.close_window()[0].drift
False
>>> for r in rows(500, -1): det.update(r)
>>> det.close_window()[0].drift
True
"""

from __future__ import annotations

import math
import random
from base64 import b64decode, b64encode
from operator import itemgetter
from typing import Any, Collection, Mapping, Sequence

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.columns import cached_matrix
from driftline.detectors.config import MultivariateSettings
from driftline.detectors.histogram import category_key

__all__ = ["PCADriftDetector", "PCAModel", "Calibration", "fit", "STATISTIC"]

#: fewer reference rows than this: no model (the detector reports nothing)
MIN_REFERENCE_ROWS = 50
_NAN = math.nan
_STR_OR_NONE = frozenset((str, type(None)))
#: the statistic of the one result row: how many standard errors the window's mean (cube-root)
#: reconstruction error lies above the reference's; its threshold is the one-sided quantile at alpha
STATISTIC = "reconstruction_error_z"


def _is_category(v: Any) -> bool:
    return isinstance(v, (str, bool))


class PCAModel:
    """Rank-normal transform and residual subspace fitted on a reference matrix.

    ``x`` is ``n x p`` floats (NaN missing). ``components`` is the number of principal
    components kept; ``None`` picks it from ``variance`` and ``max_components``.
    """

    def __init__(self, x: Any, *, components: int | None = None, variance: float = 0.95,
                 max_components: int = 50) -> None:
        import numpy as np
        from scipy.special import ndtri

        x = np.asarray(x, dtype=float)
        # Per column: the distinct reference values and the normal score of each one's mid-rank,
        # clipped to [0.5/n, 1 - 0.5/n]. A window's value is scored by interpolating this table
        # (one np.interp per column at close; outside the reference's range it takes the end's).
        self.table: list[tuple[Any, Any]] = []
        for j in range(x.shape[1]):
            col = x[:, j]
            values, counts = np.unique(col[~np.isnan(col)], return_counts=True)
            n = int(counts.sum())
            if n == 0:
                self.table.append((np.zeros(1), np.zeros(1)))
                continue
            u = np.clip((np.cumsum(counts) - counts / 2.0) / n, 0.5 / n, 1.0 - 0.5 / n)
            self.table.append((values, ndtri(u)))
        # Two-valued columns (every one-hot column, 0/1 numbers) are scored at once, in numpy.
        two = [j for j, (v, _) in enumerate(self.table) if len(v) == 2]
        self._two = np.asarray(two, dtype=int)
        self._lo = np.array([self.table[j][0][0] for j in two])
        self._width = np.array([self.table[j][0][1] - self.table[j][0][0] for j in two])
        self._s0 = np.array([self.table[j][1][0] for j in two])
        self._ds = np.array([self.table[j][1][1] - self.table[j][1][0] for j in two])
        self._other = [j for j in range(len(self.table)) if len(self.table[j][0]) != 2]
        g = self._scores(x)
        present = ~np.isnan(g)
        n_present = np.maximum(present.sum(axis=0), 1)
        self.loc = np.where(present, g, 0.0).sum(axis=0) / n_present
        sq = np.where(present, (g - self.loc) ** 2, 0.0).sum(axis=0) / n_present
        # A column constant in these rows stays constant (the table clamps): it is left out, or
        # its zero-variance direction would take the place of a residual direction.
        varies = sq > 1e-12
        self.scale = np.where(varies, np.sqrt(np.where(varies, sq, 1.0)), 1.0)
        z = self._standardise(g)
        self.center = z.mean(axis=0)
        z -= self.center
        cov = z[:, varies].T @ z[:, varies] / max(len(z), 1)
        eigval, vec = np.linalg.eigh(cov)  # ascending
        eigvec = np.zeros((x.shape[1], vec.shape[1]))
        eigvec[varies] = vec
        p = self.varying = int(varies.sum())
        if components is None:
            desc = np.clip(eigval[::-1], 0.0, None)
            total = float(desc.sum()) or 1.0
            components = int(np.searchsorted(np.cumsum(desc) / total, variance - 1e-12) + 1)
            components = min(components, max_components)
        self.components = max(0, min(int(components), p - 1))
        #: r = p - components: the residual subspace's dimension (the smallest directions of the
        #: p columns that vary)
        self.residual_dims = p - self.components
        #: p x components basis of the principal subspace; with the residual one it is an
        #: orthonormal basis of the varying columns, so a row's residual error is its squared
        #: norm there minus its squared projection here (see :meth:`errors`)
        self.principal = eigvec[:, p - self.components:]
        self._varies = varies

    def _scores(self, x: Any) -> Any:
        import numpy as np

        g = np.empty(x.shape)
        for j in self._other:
            values, scores = self.table[j]
            g[:, j] = np.interp(x[:, j], values, scores)  # NaN stays NaN
        if len(self._two):
            g[:, self._two] = self._s0 + self._ds * np.clip((x[:, self._two] - self._lo) / self._width, 0.0, 1.0)
        return g

    def _standardise(self, g: Any) -> Any:
        import numpy as np

        z = (g - self.loc) / self.scale
        return np.where(np.isnan(z), 0.0, z)

    def errors(self, x: Any) -> Any:
        """Per-row squared distance from the principal subspace, in rank-normal units."""
        import numpy as np

        x = np.asarray(x, dtype=float)
        y = (self._standardise(self._scores(x)) - self.center)[:, self._varies]
        # The squared distance from the principal subspace: |y|^2 - |projection|^2. The same as
        # projecting onto the residual basis (to rounding), at components instead of p - components
        # columns: at 1,000 features, ~20x fewer operations per window.
        proj = y @ self.principal[self._varies]
        return np.maximum((y * y).sum(axis=1) - (proj * proj).sum(axis=1), 0.0)


class Calibration:
    """The null of a window's score, from held-out reference rows' reconstruction errors.

    A window's score is the mean of its rows' cube-root errors. Errors are sums of squares
    (chi-squared-like, skewness near 3 with one residual direction); with them as they are, a
    reference half with a low mean also has a low variance, and the false-alarm rate at 1e-4 was
    ten times that. Their cube roots are nearly normal (Wilson-Hilferty), so the mean and the
    variance estimated from the reference are nearly independent.
    """

    def __init__(self, errors: Any) -> None:
        import numpy as np

        e = np.cbrt(np.asarray(errors, dtype=float))
        self.n = int(e.size)
        self.mean_error = float(np.mean(errors))
        self.mean = float(e.mean())
        d = e - self.mean
        self.var = float((d * d).mean())
        self.m3 = float((d * d * d).mean())

    def test(self, errors: Any, alpha: float) -> tuple[float, float, float]:
        """``(z, p_value, z_threshold)`` of a window's per-row errors: one-sided, H0 "same errors".

        The difference of the two means has variance ``var (1/m + 1/n)`` (the reference's
        per-row variance on both sides) and third cumulant ``m3 (1/m^2 - 1/n^2)``; Cornish-Fisher
        moves the normal quantile by what skewness is left.
        """
        import numpy as np
        from scipy.special import ndtr, ndtri

        m = len(errors)
        var = self.var * (1.0 / m + 1.0 / self.n)
        sd = math.sqrt(var) if var > 0 else 1e-12
        z = (float(np.cbrt(np.asarray(errors, dtype=float)).mean()) - self.mean) / sd
        a = self.m3 * (1.0 / m**2 - 1.0 / self.n**2) / sd**3 / 6.0 if var > 0 else 0.0
        q = float(ndtri(1.0 - alpha))
        zq = q + (q * q - 1.0) * a
        # p-value: the normal deviate w whose Cornish-Fisher quantile is z.
        if abs(a) < 1e-9:
            w = z
        else:
            disc = 1.0 + 4.0 * a * (a + z)
            w = (-1.0 + math.sqrt(disc)) / (2.0 * a) if disc >= 0 else (-math.inf if a > 0 else math.inf)
        return z, float(1.0 - ndtr(w)), zq


def fit(x: Any, *, variance: float = 0.95, max_components: int = 50, seed: int = 0) -> tuple[PCAModel, Calibration]:
    """Fit a :class:`PCAModel` on a random half of the reference rows and calibrate it on the other.

    The held-out half is scored exactly as a window will be (same transform, same subspace,
    neither fitted on those rows), so its mean error estimates a stationary window's without
    the in-sample bias, and the only reference noise in the test is that half's sampling error
    (``var / n_calibration``). Fitting and calibrating on all rows out of fold was tried: the
    fold models' subspaces differ from the final one, which nearly doubled the reference-side
    variance and tripled the false-alarm rate at the stated alpha.
    """
    import numpy as np

    x = np.asarray(x, dtype=float)
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    model = PCAModel(x[order[half:]], variance=variance, max_components=max_components)
    return model, Calibration(model.errors(x[order[:half]]))


class _Columns:
    """Which reference features the model sees, and rows of them as a matrix.

    A window keeps a shallow copy of each row it samples (one C-level dict copy per event);
    the columns are pulled out and converted at close, where numpy does it for all rows at once.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], exclude: Collection[str], top_categories: int) -> None:
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        numeric, categorical = [], []
        for name in sorted(n for n in names if n not in exclude):
            present = [v for r in rows if (v := r.get(name)) is not None]
            if not present:
                continue
            if any(_is_category(v) for v in present):
                if top_categories <= 0:
                    continue
                counts: dict[str, int] = {}
                for v in present:
                    k = category_key(v)
                    counts[k] = counts.get(k, 0) + 1
                # Never every level: their indicators would sum to one (a zero-variance direction).
                top = sorted(counts, key=lambda k: (-counts[k], k))[: min(top_categories, len(counts) - 1)]
                if top:
                    categorical.append((name, {k: i for i, k in enumerate(top)}))
            elif all(isinstance(v, (int, float)) for v in present):
                numeric.append(name)
        self.numeric: tuple[str, ...] = tuple(numeric)
        self.categorical: tuple[tuple[str, dict[str, int]], ...] = tuple(categorical)
        self.names = self.numeric + tuple(n for n, _ in categorical)
        self.expanded = len(self.numeric) + sum(len(c) for _, c in categorical)

    def _code(self, codes: Mapping[str, int], v: Any) -> int:
        return -1 if v is None else codes.get(v if type(v) is str else category_key(v), -1)

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """``len(rows) x expanded`` floats: numbers (NaN missing or not a number), then one-hot
        columns of each categorical feature's top categories (all zero: another or missing)."""
        return self.expand(self.coded(rows))

    def coded(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """``len(rows) x len(names)`` floats: numbers (NaN missing or not a number), then each
        categorical feature's code among its top categories (NaN or -1: another or missing)."""
        import numpy as np

        m = len(rows)
        parts = [self._numbers(rows)] if self.numeric else []
        for name, codes in self.categorical:
            try:  # one C-level pass; a row without the feature takes the slow path
                vals = list(map(itemgetter(name), rows))
            except KeyError:
                vals = [r.get(name) for r in rows]
            if set(map(type, vals)) <= _STR_OR_NONE:  # keys as they are: look them up in C
                idx = np.array(list(map(codes.get, vals)), dtype=float)  # None (other, missing) -> NaN
            else:  # numbers or bools as categories: keyed as the histograms key them
                idx = np.array([self._code(codes, v) for v in vals], dtype=float)
            parts.append(idx.reshape(m, 1))
        if not parts:
            return np.empty((m, 0))
        return np.hstack(parts) if len(parts) > 1 else parts[0]

    def expand(self, coded: Any) -> Any:
        """Rows of :meth:`coded` as :meth:`matrix` gives them: the codes one-hot."""
        import numpy as np

        p = len(self.numeric)
        if not self.categorical:
            return coded
        parts = [coded[:, :p]] if p else []
        for j, (_, codes) in enumerate(self.categorical):
            col = coded[:, p + j]
            parts += [(col == float(i)).astype(float) for i in range(len(codes))]  # every feature has 1+ codes
        return np.column_stack(parts).astype(float, copy=False)

    def _numbers(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        import numpy as np

        names = self.numeric
        shape = (len(rows), len(names))
        try:  # the common case: every row has every number (None is NaN here)
            get = itemgetter(*names)
            x = np.array([get(r) for r in rows] if len(names) > 1 else [[get(r)] for r in rows], dtype=float)
            if x.shape == shape:
                return x
        except (KeyError, TypeError, ValueError):
            pass
        return np.array([[_number(r.get(n)) for n in names] for r in rows], dtype=float).reshape(shape)

    @staticmethod
    def encode(row: Any) -> str:
        """A kept row (of :meth:`coded`) as JSON-able state: its float64 values, little-endian, in
        base64 (NaN for missing numbers and for other or missing categories, as :meth:`coded`
        holds them). A 1,000-feature row was a list of 1,000 numbers: ~4x the time to write as
        JSON, ~5x to compress, and every save checked each for NaN."""
        return b64encode(row.astype("<f8", copy=False).tobytes()).decode("ascii")

    @staticmethod
    def decode(rows: Sequence[Any]) -> Any:
        """The rows :meth:`encode` stored, as :meth:`coded` gives them; rows saved before (lists of
        numbers, None missing, -1 another category) as well."""
        import numpy as np

        return np.array([np.frombuffer(b64decode(r), dtype="<f8") if type(r) is str else np.array(r, dtype=float)
                         for r in rows], dtype=float)  # None -> NaN; a code of -1 matches no category


def _number(v: Any) -> float:
    # As numpy's float conversion takes them (True is 1.0, "2.5" is 2.5); anything else is missing.
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return _NAN
    return _NAN


class PCADriftDetector(Detector):
    """Mean PCA reconstruction error of a window vs. the reference's; one verdict per window
    (feature ``*``, statistic :data:`STATISTIC`) at false-alarm probability ``alpha``."""

    name = "multivariate.pca"

    def __init__(self, reference_rows: Sequence[Mapping[str, Any]], settings: MultivariateSettings, *,
                 min_samples: int = 100, exclude: Collection[str] = ()) -> None:
        super().__init__()
        self.settings = settings
        #: the model budget's per-test level, set by the owner before a window closes (None: alpha)
        self.budget_alpha: float | None = None
        self.min_samples = min_samples
        # Ids and timestamps (``exclude``) are left out: outside the reference's range in every
        # window by construction, they say nothing about how the other features move together.
        self.columns = _Columns(reference_rows, exclude, settings.top_categories)
        self.model: PCAModel | None = None
        self.calibration: Calibration | None = None
        if self.columns.expanded >= 2 and len(reference_rows) >= MIN_REFERENCE_ROWS:
            x = self.columns.matrix(reference_rows)
            self.model, self.calibration = fit(x, variance=settings.pca_variance,
                                               max_components=settings.max_components, seed=settings.seed)
            if self.model.varying < 2:  # nothing multivariate to watch
                self.model = self.calibration = None
        self.reference_size = len(reference_rows)
        self._rng = random.Random(settings.seed)
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        #: the reservoir's rows as :meth:`_Columns.coded` gives them (the first ``self.m`` rows;
        #: grown as rows arrive): 8 bytes a feature, where a copy of each row's dict was ~10x that
        self.rows: Any = None
        self.m = 0
        # rows as get_state writes them, encoded once (None: not yet): a save then costs the rows
        # that changed, not the whole sample
        self._encoded: list[list[Any] | None] = []

    def _put(self, slots: Sequence[int], coded: Any) -> None:
        """Rows ``coded`` into the reservoir's distinct ``slots``; new slots come in order."""
        import numpy as np

        need = max(slots) + 1
        if self.rows is None or need > len(self.rows):
            held = 0 if self.rows is None else len(self.rows)
            # doubling up to sample_size (more when a saved state kept more, under another setting)
            cap = max(need, min(self.settings.sample_size, max(64, 2 * held)))
            grown = np.empty((cap, coded.shape[1]))
            if self.rows is not None:
                grown[:self.m] = self.rows[:self.m]
            self.rows = grown
        self.rows[list(slots)] = coded  # distinct slots (numpy leaves repeated ones' order open)
        for j in slots:
            if j >= self.m:
                self._encoded.append(None)
                self.m += 1
            else:
                self._encoded[j] = None

    def update(self, features: Mapping[str, Any]) -> None:  # type: ignore[override]
        self.update_many([features])

    def update_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``update`` for each row, in order: the reservoir (Algorithm R: bounded memory) picks
        the rows, then they are converted together."""
        k = self.settings.sample_size
        room = max(0, min(len(rows), k - self.m))
        slots, picked = list(range(self.m, self.m + room)), list(range(room))
        self.n += room
        randrange = self._rng.randrange
        for i in range(room, len(rows)):
            self.n += 1
            j = randrange(self.n)
            if j < k:
                slots.append(j)
                picked.append(i)
        if picked:
            last = dict(zip(slots, picked))  # a slot picked twice keeps the later row
            at = list(last.values())
            # The batch's numeric matrix when the drift histograms built one (columns.py), else from the dicts.
            known = None if self.columns.categorical else cached_matrix(rows, self.columns.numeric, at)
            self._put(list(last), known if known is not None else self.columns.coded([rows[i] for i in at]))

    def close_window(self) -> tuple[DetectorResult, ...]:
        out: tuple[DetectorResult, ...] = ()
        m = self.m
        model, cal = self.model, self.calibration
        if model is not None and cal is not None and self.n >= self.min_samples and m >= 2:
            errors = model.errors(self.columns.expand(self.rows[:m]))
            alpha = self.settings.alpha
            if self.budget_alpha is not None:
                alpha = min(alpha, self.budget_alpha)
            z, p, thr = cal.test(errors, alpha)
            mean = float(errors.mean())
            out = (DetectorResult(
                self.name, "*", STATISTIC, z, p, thr, z > thr, self.reference_size, self.n,
                (("sample", m), ("features", len(self.columns.names)), ("components", model.components),
                 ("residual_dims", model.residual_dims), ("mean_error", mean),
                 ("reference_error", cal.mean_error), ("alpha", alpha))),)
        self._drift = bool(out and out[0].drift)
        self._clear()
        return self._judge(out)

    def get_state(self) -> dict[str, Any]:
        st = self._rng.getstate()
        enc, encode = self._encoded, self.columns.encode
        for i, e in enumerate(enc):
            if e is None:
                enc[i] = encode(self.rows[i])  # type: ignore[index]
        return {"n": self.n, "rows": list(enc), "names": list(self.columns.names),
                "rng": [st[0], list(st[1]), st[2]], "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        self.n = int(state["n"])
        # Rows stored before the feature set changed (a new exclusion) cannot be mixed in.
        same = list(state.get("names", ())) == list(self.columns.names)
        self.rows, self.m, self._encoded = None, 0, []
        kept = state["rows"] if same else []
        if kept:
            self._put(range(len(kept)), self.columns.decode(kept).reshape(len(kept), len(self.columns.names)))
        a, b, c = state["rng"]
        self._rng.setstate((a, tuple(b), c))
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self._clear()
        self._rng = random.Random(self.settings.seed)
        self._drift = False
        self._verdicts = {}
