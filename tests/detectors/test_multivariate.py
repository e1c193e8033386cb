from __future__ import annotations

import random
import subprocess
import sys

import pytest

from driftline.detectors.config import DataDriftSettings, MultivariateSettings
from driftline.detectors.drift import DataDriftDetector
from driftline.detectors.multivariate import DomainClassifierDetector
from driftline.detectors.reference import from_events
from driftline.sdk.errors import ConfigError


def _rows(n, sign, rng):
    out = []
    for _ in range(n):
        a = rng.gauss(0, 1)
        out.append({"a": a, "b": sign * a + rng.gauss(0, 0.3), "c": rng.choice("xy")})
    return out


def test_correlation_flip_is_invisible_to_marginals_but_caught_by_the_domain_classifier():
    rng = random.Random(0)
    ref_rows = _rows(3000, 1, rng)
    ref = from_events([{"features": r, "prediction": 0} for r in ref_rows], "m", "v1")
    uni = DataDriftDetector(ref.features, DataDriftSettings(), min_samples=100)
    mv = DomainClassifierDetector(ref.sample, MultivariateSettings(enabled=True, sample_size=500), min_samples=100)
    for sign, expect in ((1, False), (-1, True)):
        for r in _rows(1000, sign, rng):
            uni.update(r)
            mv.update(r)
        uni.close_window()
        (res,) = mv.close_window()
        assert uni.drift_detected is False  # marginals unchanged either way
        assert mv.drift_detected is expect and res.drift is expect, res
        assert (res.value > 0.8) is expect and (res.p_value < 1e-6) is expect


def test_alibi_backend_is_optional_and_not_imported_by_default():
    code = ("import sys, driftline.detectors.engine, driftline.detectors.monitor, driftline.detectors.alibi_backend;"
            "print('alibi_detect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_alibi_backend_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hidden whether or not the extra is installed here: a None entry makes `import alibi_detect` fail.
    for name in [m for m in sys.modules if m == "alibi_detect" or m.startswith("alibi_detect.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "alibi_detect", None)
    from driftline.detectors.alibi_backend import AlibiDriftDetector

    with pytest.raises(ConfigError, match=r"driftline\[alibi\].*Business Source License"):
        AlibiDriftDetector([{"a": 1.0}], MultivariateSettings(enabled=True, backend="alibi_mmd"))
