"""detectors/histogram.py: fixed-bin sketches from a reference (the statistics over them:
test_univariate.py)."""

from __future__ import annotations

from driftline.detectors.histogram import Histogram, profile_numeric


def test_numeric_histogram_bins_out_of_range_missing_and_type_errors():
    prof = profile_numeric("x", [1.0, 2.0, 3.0, 4.0], bins=2)
    h = Histogram(prof)
    for v in [0.5, 1.0, 4.0, 9.0, None, float("nan"), "x", True]:
        h.add(v)
    assert h.out_of_range() == 2  # 0.5 below min, 9.0 above max; 4.0 (the max) is in range
    assert h.missing == 2 and h.type_errors == 2
