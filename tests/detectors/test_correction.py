"""detectors/correction.py: multiple-testing corrections of p-values."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors.correction import adjust_p_values


def test_corrections():
    ps = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    bh = adjust_p_values(ps, "bh")
    from scipy.stats import false_discovery_control
    assert np.allclose(bh, false_discovery_control(ps, method="bh"))
    assert adjust_p_values(ps, "bonferroni")[0] == pytest.approx(0.01)
    assert adjust_p_values(ps, "none") == tuple(ps)
    with pytest.raises(ValueError):
        adjust_p_values(ps, "holm")
