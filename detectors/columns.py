"""A batch's numeric features as one matrix, built once for every detector that reads them.

The data drift histograms, the quality checks and the multivariate (PCA) detector each read the
same events' features; at 1,000 features, pulling the values out of the event dicts and into
numpy was done twice per event (~50 µs each) and the quality check compared every event's
1,000 names with the reference's (~20 µs). :class:`FeatureRows` is the batch's list of feature
dicts with the matrices built from it kept, so the second reader takes the first one's.

>>> rows = FeatureRows([{"a": 1, "b": 2.5}, {"a": 3, "b": -1.0}])
>>> numeric_matrix(rows, ("a", "b")).tolist()
[[1.0, 2.5], [3.0, -1.0]]
>>> numeric_matrix(rows, ("b",)) is not None and cached_matrix(rows, ("b",)).tolist()  # columns of the first
[[2.5], [-1.0]]
>>> numeric_matrix([{"a": 1}, {"a": True}], ("a",)) is None  # a bool is not a number here
True
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

from driftline.sdk.contract.schema import NUMBER_TYPES


class FeatureRows(list):  # type: ignore[type-arg]
    """The feature dicts of a batch (a list), with the matrices :func:`numeric_matrix` built."""

    __slots__ = ("matrices",)

    def __init__(self, rows: Any = ()) -> None:
        super().__init__(rows)
        #: names -> their matrix, or None when some row does not hold every one as a number
        self.matrices: dict[tuple[str, ...], Any] = {}


def _build(rows: Sequence[Any], names: tuple[str, ...]) -> Any:
    import numpy as np

    getter = operator.itemgetter(*names)
    try:
        table = list(map(getter, rows))
    except (KeyError, TypeError):
        return None
    flat = itertools.chain.from_iterable(table) if len(names) > 1 else table
    if not set(map(type, flat)) <= NUMBER_TYPES:
        return None
    return np.array(table, dtype=float).reshape(len(rows), len(names))


def numeric_matrix(rows: Sequence[Any], names: tuple[str, ...]) -> Any:
    """``len(rows) x len(names)`` floats: each row's values of ``names``, when every row holds
    every one of them as an ``int`` or a ``float`` (not a bool, not None); else None.

    For a :class:`FeatureRows` the result is kept (and taken from a kept matrix of more
    names when there is one); for a plain list it is built each time."""
    if not names or not rows:
        return None
    cache = getattr(rows, "matrices", None)
    if cache is None:
        return _build(rows, names)
    if names in cache:
        return cache[names]
    got = cached_matrix(rows, names)
    if got is None:
        got = _build(rows, names)
    cache[names] = got
    return got


def cached_matrix(rows: Sequence[Any], names: tuple[str, ...], at: Sequence[int] | None = None) -> Any:
    """The matrix of ``names`` (see :func:`numeric_matrix`) if ``rows`` keeps one, or keeps one
    of more names (its columns, then); None otherwise: nothing is built. With ``at``, only
    those rows of it, in that order."""
    cache = getattr(rows, "matrices", None)
    if not cache or not names:
        return None
    import numpy as np

    matrix = cache.get(names)
    if matrix is not None:
        return matrix if at is None else matrix[np.asarray(at, dtype=np.intp)]
    wanted = set(names)
    for have, matrix in cache.items():
        if matrix is not None and len(have) >= len(names) and wanted.issubset(have):
            where = {n: i for i, n in enumerate(have)}
            cols = np.array([where[n] for n in names], dtype=np.intp)
            if at is None:
                return matrix[:, cols]
            return matrix[np.ix_(np.asarray(at, dtype=np.intp), cols)]
    return None


def holds_exactly(rows: Sequence[Any], names: frozenset[str]) -> bool:
    """True when every one of ``rows`` is known to have exactly the keys ``names``: a kept
    matrix says each holds all of them, and each holds no more (by its length)."""
    cache = getattr(rows, "matrices", None)
    if not cache:
        return False
    n = len(names)
    if not any(m is not None and len(have) == n and names.issuperset(have) for have, m in cache.items()):
        return False
    return all(len(r) == n for r in rows)
