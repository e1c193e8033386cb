from __future__ import annotations

import json
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


class _FakeOnline:
    """Stands in for alibi-detect's online detectors (the extra is not installed here): it keeps
    the width of its reference and says so in every prediction."""

    def __init__(self, x_ref, **kwargs) -> None:
        self.width = x_ref.shape[1]
        self.seen = 0

    def predict(self, x, return_test_stat=False):
        assert x.shape[-1] == self.width, "rows of another width reached the detector"
        self.seen += 1
        return {"data": {"is_drift": 0, "test_stat": float(self.seen), "threshold": 10.0}}

    def reset_state(self) -> None:
        self.seen = 0


def test_alibi_state_of_another_feature_set_is_not_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    cd = types.ModuleType("alibi_detect.cd")
    cd.MMDDriftOnline = cd.LSDDDriftOnline = _FakeOnline
    pkg = types.ModuleType("alibi_detect")
    pkg.cd = cd
    monkeypatch.setitem(sys.modules, "alibi_detect", pkg)
    monkeypatch.setitem(sys.modules, "alibi_detect.cd", cd)
    from driftline.detectors.alibi_backend import AlibiDriftDetector

    rng = random.Random(1)
    ref = [{"a": rng.gauss(0, 1), "b": rng.gauss(0, 1), "id": i} for i in range(200)]
    settings = MultivariateSettings(backend="alibi_mmd")
    wide = AlibiDriftDetector(ref, settings)
    for r in ref[:30]:
        wide.update(r)
    state = json.loads(json.dumps(wide.get_state()))
    same = AlibiDriftDetector(ref, settings)
    same.set_state(state)
    assert same._cd.seen == 30 and same.n == 30
    # The id is excluded now: the saved detector (three columns) is not brought back.
    narrow = AlibiDriftDetector(ref, settings, exclude=("id",))
    narrow.set_state(state)
    assert narrow._cd.width == 2 and narrow._cd.seen == 0 and narrow.n == 30
    narrow.update(ref[0])  # no row of the old width reaches it
    (res,) = narrow.close_window()
    assert res.value == 1.0 and res.current_size == 31
