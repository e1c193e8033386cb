"""Shadow divergence: primary and shadow outputs for the same request, compared per window.

The engine pairs a primary and a shadow prediction by ``request_id`` and calls
``update(primary, shadow)`` with each side's ``prediction``, ``latency_ms`` and ``status``.
Per window and per pair of model versions it reports the agreement rate (same top class, or
numeric outputs within a tolerance), the mean absolute difference of numeric outputs or class
scores, the Jensen–Shannon distance between the two output distributions, and the latency and
error-rate deltas (shadow minus primary).

>>> from driftline.detectors.config import ShadowSettings
>>> d = ShadowDivergenceDetector("v1->v2", ShadowSettings(), min_samples=10)
>>> for i in range(100): d.update({"prediction": "a"}, {"prediction": "a" if i % 10 else "b"})
>>> [r for r in d.close_window() if r.statistic == "agreement_rate"][0].value
0.9
"""

from __future__ import annotations

from typing import Any, Mapping

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.config import ShadowSettings
from driftline.detectors.histogram import category_key
from driftline.detectors.reference import prediction_features
from driftline.detectors.univariate import js_distance

__all__ = ["ShadowDivergenceDetector"]

_SCORE_BINS = 20
_MAX_CLASSES = 100


def _number(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


class ShadowDivergenceDetector(Detector):
    """Divergence between a primary and a shadow model version (``feature`` names the pair)."""

    name = "shadow"

    def __init__(self, feature: str, settings: ShadowSettings, *, min_samples: int = 100) -> None:
        super().__init__()
        self.feature = feature
        self.settings = settings
        self.min_samples = min_samples
        self.unpaired = 0
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.agree = 0
        self.diff_n = 0
        self.diff_sum = 0.0
        self.lat_n = 0
        self.lat_sum = 0.0
        self.err_p = 0
        self.err_s = 0
        # Output distributions: class counts, or score histograms on [0, 1].
        self.dist_p: dict[str, int] = {}
        self.dist_s: dict[str, int] = {}

    def _bucket(self, feats: Mapping[str, Any], raw: Any) -> str | None:
        x = _number(raw)
        if x is not None:
            if 0.0 <= x <= 1.0:
                return f"s{min(_SCORE_BINS - 1, int(x * _SCORE_BINS))}"
            return None  # unbounded regression output: no fixed bins without a reference
        label = feats.get("prediction")
        return None if label is None else "c" + category_key(label)

    def _count(self, dist: dict[str, int], key: str | None) -> None:
        if key is not None and (key in dist or len(dist) < _MAX_CLASSES):
            dist[key] = dist.get(key, 0) + 1

    def update(self, primary: Mapping[str, Any], shadow: Mapping[str, Any]) -> None:  # type: ignore[override]
        self.n += 1
        self.err_p += primary.get("status", "ok") == "error"
        self.err_s += shadow.get("status", "ok") == "error"
        lp, ls = _number(primary.get("latency_ms")), _number(shadow.get("latency_ms"))
        if lp is not None and ls is not None:
            self.lat_n += 1
            self.lat_sum += ls - lp
        rp, rs = primary.get("prediction"), shadow.get("prediction")
        fp, fs = prediction_features(rp), prediction_features(rs)
        xp, xs = _number(rp), _number(rs)
        if xp is not None and xs is not None:
            d = abs(xp - xs)
            self.agree += d <= self.settings.numeric_tolerance
            self.diff_n += 1
            self.diff_sum += d
        else:
            pp, ps = fp.get("prediction"), fs.get("prediction")
            self.agree += pp is not None and category_key(pp) == category_key(ps)
            if isinstance(rp, dict) and isinstance(rs, dict):
                classes = set(rp) | set(rs)
                self.diff_n += 1
                self.diff_sum += sum(abs(float(rp.get(c, 0.0)) - float(rs.get(c, 0.0)))
                                     for c in classes) / max(1, len(classes))
        self._count(self.dist_p, self._bucket(fp, rp))
        self._count(self.dist_s, self._bucket(fs, rs))

    def close_window(self) -> tuple[DetectorResult, ...]:
        s = self.settings
        n = self.n
        out: list[DetectorResult] = []
        if n >= self.min_samples:
            det = (("unpaired", self.unpaired),)
            rate = self.agree / n
            out.append(DetectorResult(self.name, self.feature, "agreement_rate", rate, None,
                                      s.min_agreement, rate < s.min_agreement, n, n, det))
            if self.diff_n:
                mad = self.diff_sum / self.diff_n
                limit = s.max_mean_abs_diff
                out.append(DetectorResult(self.name, self.feature, "mean_abs_diff", mad, None, limit,
                                          limit is not None and mad > limit, n, self.diff_n, det))
            keys = sorted(set(self.dist_p) | set(self.dist_s))
            if keys:
                js = js_distance([self.dist_p.get(k, 0) for k in keys], [self.dist_s.get(k, 0) for k in keys])
                out.append(DetectorResult(self.name, self.feature, "jensen_shannon", js, None, s.max_js,
                                          js > s.max_js, n, n, det))
            if self.lat_n:
                out.append(DetectorResult(self.name, self.feature, "latency_delta_ms",
                                          self.lat_sum / self.lat_n, None, None, False, n, self.lat_n, det))
            out.append(DetectorResult(self.name, self.feature, "error_rate_delta",
                                      (self.err_s - self.err_p) / n, None, None, False, n, n, det))
        self._drift = any(r.drift for r in out)
        self.unpaired = 0
        self._clear()
        return self._judge(out)  # one verdict for the pair: any of its limits crossed

    _FIELDS = ("n", "agree", "diff_n", "diff_sum", "lat_n", "lat_sum", "err_p", "err_s",
               "dist_p", "dist_s", "unpaired")

    def get_state(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self._FIELDS}, "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        for k in self._FIELDS:
            setattr(self, k, dict(state[k]) if isinstance(state[k], dict) else state[k])
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self._clear()
        self.unpaired = 0
        self._drift = False
        self._verdicts = {}
