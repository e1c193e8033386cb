"""The cases of the estimation benchmark: a labelled reference and windows under covariate shift.

Every case is a model that was fitted on data the reference and the windows do not contain, a
labelled reference from the unshifted population, and ``windows`` windows of ``window`` rows
whose inputs drift (fixed seeds; ``seed`` > 0 draws the case again, see :func:`build`):

* ``binary`` / ``multiclass`` / ``regression``: synthetic, 4 features, the model a (mis-specified)
  linear one: logistic / multinomial logistic regression, least squares; the truth has an
  interaction term and (regression) heteroscedastic noise. After ``stable`` windows the inputs
  move: feature 0's spread shrinks towards the decision boundary and feature 1's mean moves.
* ``breast_cancer`` (binary), ``digits`` (10 classes), ``diabetes`` (regression): scikit-learn's
  bundled data sets (no download). The model's outputs are cross-fitted (5-fold), the rows split
  in half into the reference and a pool, and each window draws from the pool with replacement,
  weighted by ``exp(beta * z)`` on one standardised feature (mean radius, the first principal
  component, BMI) with ``beta`` rising from 0 to 1.5: a covariate shift of known direction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Case", "CASES", "build"]


@dataclasses.dataclass
class Case:
    name: str
    kind: str  # "classification" | "regression"
    window: int
    classes: list[str]
    ref_features: np.ndarray
    ref_out: np.ndarray      # (n, k) scores, or (n,) predictions
    ref_y: np.ndarray        # int class codes, or float targets
    features: np.ndarray     # the windows' rows, window after window
    out: np.ndarray
    y: np.ndarray
    # further labelled references from the same population (synthetic cases, ``references=``):
    # (features, outputs, targets) each, drawn after everything above so the case is unchanged
    more_references: list = dataclasses.field(default_factory=list)

    @property
    def windows(self) -> int:
        return len(self.y) // self.window

    def window_slice(self, w: int) -> slice:
        return slice(w * self.window, (w + 1) * self.window)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _draw(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    return (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)[:, :-1]).sum(axis=1)


def _shifted_x(rng: np.random.Generator, n: int, t: float) -> np.ndarray:
    """4 standard normal features; at shift ``t`` in [0, 1] feature 0's sd shrinks to 0.35 and
    feature 1's mean moves by +0.8 (feature 0 carries most of the signal)."""
    x = rng.normal(size=(n, 4))
    x[:, 0] *= 1 - 0.65 * t
    x[:, 1] += 0.8 * t
    return x


def _schedule(windows: int, stable: int) -> np.ndarray:
    return np.clip((np.arange(windows) - stable + 1) / max(1, windows - stable), 0, 1)


def _rng(base: int, seed: int) -> np.random.Generator:
    """The case's generator: its fixed ``base`` seed for ``seed`` 0 (the benchmark's one-seed data,
    unchanged), another independent stream for each ``seed`` > 0."""
    return np.random.default_rng(base if seed == 0 else [base, seed])


def _synthetic(name: str, k: int, base: int, windows: int, window: int, ref_rows: int, stable: int,
               references: int = 1, seed: int = 0) -> Case:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = _rng(base, seed)
    coef = rng.normal(size=(4, max(k, 1))) * 1.2
    coef[0] *= 2.0

    def truth(x):
        z = x @ coef + 0.8 * (x[:, 2] * x[:, 3])[:, None]
        return z

    def sample(x):
        z = truth(x)
        if k == 1:
            return z[:, 0] + 0.5 * x[:, 0] ** 2 + rng.normal(size=len(x)) * (0.3 + np.abs(x[:, 1]))
        p = _softmax(np.c_[np.zeros(len(x)), z[:, 1:]] if k == 2 else z)
        return _draw(rng, p)

    x_train = _shifted_x(rng, 5000, 0.0)
    y_train = sample(x_train)
    model = (LinearRegression() if k == 1 else LogisticRegression(max_iter=500)).fit(x_train, y_train)
    out = model.predict if k == 1 else model.predict_proba
    x_ref = _shifted_x(rng, ref_rows, 0.0)
    xs = np.concatenate([_shifted_x(rng, window, t) for t in _schedule(windows, stable)])
    classes = [] if k == 1 else [f"c{c}" for c in range(k)]
    case = Case(name, "regression" if k == 1 else "classification", window, classes,
                x_ref, out(x_ref), sample(x_ref), xs, out(xs), sample(xs))
    for _ in range(references - 1):
        x_more = _shifted_x(rng, ref_rows, 0.0)
        case.more_references.append((x_more, out(x_more), sample(x_more)))
    return case


def _real(name: str, loader: str, base: int, windows: int, window: int, seed: int = 0,
          distinct: bool = False) -> Case:
    from sklearn import datasets
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = getattr(datasets, loader)()
    x, y = np.asarray(data.data, dtype=float), np.asarray(data.target)
    regression = loader == "load_diabetes"
    if regression:
        out = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=1.0)), x, y, cv=5)
        shift_on = x[:, 2]  # BMI
    else:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        out = cross_val_predict(clf, x, y, cv=5, method="predict_proba")
        shift_on = x[:, 0] if loader == "load_breast_cancer" else PCA(1, random_state=0).fit_transform(x)[:, 0]
    z = (shift_on - shift_on.mean()) / shift_on.std()
    rng = _rng(base, seed)
    order = rng.permutation(len(y))
    ref, pool = order[: len(y) // 2], order[len(y) // 2:]
    rows = []
    for beta in np.linspace(0.0, 1.5, windows):
        w = np.exp(beta * z[pool])
        rows.append(rng.choice(pool, size=window, replace=not distinct, p=w / w.sum()))
    idx = np.concatenate(rows)
    classes = [] if regression else [f"c{c}" for c in range(out.shape[1])]
    return Case(name, "regression" if regression else "classification", window, classes,
                x[ref], out[ref], y[ref], x[idx], out[idx], y[idx])


CASES = ("binary", "multiclass", "regression", "breast_cancer", "digits", "diabetes")


def build(names: tuple[str, ...] = CASES, *, quick: bool = False, references: int = 1, seed: int = 0,
          distinct: bool = False) -> list[Case]:
    """The named cases; ``quick`` halves the synthetic streams' windows; ``references`` > 1 adds
    that many - 1 further labelled references to the synthetic cases (``Case.more_references``).
    ``seed`` 0 is the benchmark's fixed data; another ``seed`` draws each case anew: for the
    synthetic cases a new model (its training rows and the truth's coefficients), reference and
    windows; for the real data sets a new reference/pool split and resampling (the cross-fitted
    model's outputs do not depend on it). ``distinct``: the real data sets' windows draw their rows
    without replacement (no row twice in a window, as in production; with replacement, the default,
    a window of n rows from a pool of N repeats rows, and a repeated row's label is the same draw
    twice, which widens the realised value's spread by about 1 + n/N beyond any band that takes
    rows as independent)."""
    w = 30 if quick else 60
    make = {
        "binary": lambda: _synthetic("binary", 2, 1, w, 1000, 5000, w // 4, references, seed),
        "multiclass": lambda: _synthetic("multiclass", 3, 2, w, 1000, 5000, w // 4, references, seed),
        "regression": lambda: _synthetic("regression", 1, 3, w, 1000, 5000, w // 4, references, seed),
        "breast_cancer": lambda: _real("breast_cancer", "load_breast_cancer", 4, 40, 200, seed, distinct),
        "digits": lambda: _real("digits", "load_digits", 5, 40, 300, seed, distinct),
        "diabetes": lambda: _real("diabetes", "load_diabetes", 6, 40, 100, seed, distinct),
    }
    return [make[n]() for n in names]
