"""DLE's band and the reference's sampling error (detectors/estimation_dle.py): the loss trees
learn the loss's level from the reference's rows, an error every window shares."""

from __future__ import annotations

import copy

import numpy as np

from driftline.detectors.estimation import DLE, realised_regression


def stream(rng: np.random.Generator, n: int):
    """A regressor whose error's scale grows with |x1|."""
    x = rng.normal(size=(n, 2))
    pred = 2 * x[:, 0]
    return x, pred, pred + rng.normal(size=n) * (0.3 + np.abs(x[:, 1]))


def test_the_band_holds_the_references_error_when_windows_outgrow_the_reference():
    """30 references of 300 rows, each graded on one 3,000-row window from the same population:
    the window's own sampling error is then smaller than the reference's, which every estimate
    carries. With the reference's term the 95 % band covers the realised MAE about as often as
    it says; without it (a state saved before the term: ``reference_rows`` 0) it is too narrow."""
    rng = np.random.default_rng(11)
    covered, covered_without, widths = 0, 0, []
    for _ in range(30):
        est = DLE.fit(*stream(rng, 300))
        x, pred, y = stream(rng, 3000)
        real = realised_regression(pred, y)["mae"]
        band = est.estimate(x, pred)["mae"]
        old = copy.copy(est)
        old.model = copy.copy(est.model)
        old.model.reference_rows = 0
        narrow = old.estimate(x, pred)["mae"]
        covered += band.lower <= real <= band.upper
        covered_without += narrow.lower <= real <= narrow.upper
        widths.append((band.upper - band.lower) / (narrow.upper - narrow.lower))
    # at most the term's sqrt(1 + n / N) (rows outside the reference's range add the other term)
    assert 1 < min(widths) and max(widths) <= np.sqrt(1 + 3000 / 300) + 1e-9
    assert covered >= 25  # 30 draws at 95 %: 25 or more with probability > 0.99
    assert covered_without <= 20  # 10 of 30 here: the band without the term is far too narrow
