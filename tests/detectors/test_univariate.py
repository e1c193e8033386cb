"""detectors/univariate.py: two-sample statistics from binned counts, checked against scipy on raw
samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from driftline.detectors.histogram import NUMERIC, Histogram, profile_categorical, profile_numeric
from driftline.detectors.drift import _feature_tests, magnitude_tests
from driftline.detectors.univariate import (
    chi2_homogeneity, js_distance, ks_binned, psi, wasserstein_binned,
)


def _binned(ref: np.ndarray, cur: np.ndarray, bins: int = 50) -> tuple:
    prof = profile_numeric("x", ref, bins=bins)
    h = Histogram(prof)
    for v in cur:
        h.add(float(v))
    return prof, h


def test_ks_and_wasserstein_track_the_raw_statistics():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.3, 1.2, 5_000)
    prof, h = _binned(ref, cur)
    d, p = ks_binned(prof.counts, h.counts)
    raw = stats.ks_2samp(ref, cur)
    assert abs(d - raw.statistic) < 0.02 and d <= raw.statistic + 1e-9
    assert p < 1e-10 and raw.pvalue < 1e-10
    w = wasserstein_binned(prof.counts, prof.sums, h.counts, h.sums, prof.std)
    assert w == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std(), rel=0.05)


def test_same_distribution_gives_small_distances_and_large_p():
    rng = np.random.default_rng(2)
    prof, h = _binned(rng.normal(0, 1, 20_000), rng.normal(0, 1, 5_000), bins=20)
    assert psi(prof.counts, h.counts) < 0.02
    assert js_distance(prof.counts, h.counts) < 0.05
    assert ks_binned(prof.counts, h.counts)[1] > 0.01


def test_js_and_psi_extremes():
    assert js_distance([5, 0], [0, 5]) == pytest.approx(1.0)
    assert js_distance([3, 7], [3, 7]) == 0.0
    assert psi([50, 50], [90, 10]) > 0.5


def test_chi2_matches_scipy_contingency_and_handles_unseen():
    ref, cur = [600, 300, 100, 0], [300, 300, 300, 100]  # last bin: unseen categories
    stat, p = chi2_homogeneity(ref, cur)
    expected = stats.chi2_contingency(np.array([ref, cur]), correction=False)
    assert stat == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    prof = profile_categorical("c", ["a"] * 6 + ["b"] * 4, max_categories=10)
    h = Histogram(prof)
    for v in ["a", "zzz", "zzz", "b"]:
        h.add(v)
    assert h.counts == [1, 1, 2] and h.unseen == {"zzz": 2}


def test_the_matrix_statistics_equal_one_feature_at_a_time():
    """``magnitude_tests`` (numeric features as matrices) against ``_feature_tests`` per feature:
    shifted, identical, disjoint, constant, zero-mean, sparse and infinite-valued windows, with a
    categorical feature and a 5-bin one beside the 20-bin ones."""
    rng = np.random.default_rng(4)
    judged, hists = [], {}
    for i in range(60):
        name = f"f{i}"
        if i == 0:
            prof = profile_categorical(name, rng.choice(list("abcd"), 300).tolist(), max_categories=10)
            cur = rng.choice(list("abcde"), 200).tolist()
        else:
            ref = np.full(300, 2.5) if i == 1 else rng.normal(0 if i % 3 else 0.0, 1 + i % 4, 300 + i)
            prof = profile_numeric(name, ref.tolist(), bins=5 if i % 9 == 0 else 20)
            cur = (ref[:200] if i == 2 else np.full(50, 9e3) if i == 3 else np.full(80, 2.5) if i == 4
                   else rng.normal(0.2 * (i % 5), 1 + i % 3, int(rng.integers(20, 400))))
            cur = [float(v) for v in cur] + ([float("inf")] if i == 5 else [])
        h = hists[name] = Histogram(prof)
        for v in cur:
            h.add(v)
        judged.append((name, prof))
    numeric, categorical = ("psi", "wasserstein", "jensen_shannon"), ("jensen_shannon", "psi")
    got = magnitude_tests(judged, hists, numeric, categorical)
    assert list(got) != [n for n, _ in judged]  # the categorical one went one by one, first
    assert set(got) == {n for n, _ in judged}
    for name, prof in judged:
        tests = numeric if prof.kind == NUMERIC else categorical
        one = [(t, v) for t, v, _ in _feature_tests(prof, hists[name], tests)]
        assert [t for t, _ in got[name]] == [t for t, _ in one]
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in one], rel=1e-12, abs=1e-15), name
    assert {t for t, v in got["f2"]} == set(numeric) and max(v for _, v in got["f3"]) > 1
