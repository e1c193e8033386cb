"""A/B experiments: per-variant prediction metrics and outcome metrics with a significance test.

Outcome events (a conversion, a basket value) are attributed to the variant that served the
request. Outcome statistics accumulate over the whole experiment (sample sizes only grow), and
every window close reports for each outcome and each arm: the mean and its sample size, and the
difference to the control arm with a p-value — a two-proportion z-test when all values are
0/1, Welch's t-test otherwise. ``exceeded`` on a ``lift.*`` row means "this arm is significant at
alpha"; ``drift``, the verdict on every row of the outcome, that some arm is.

>>> from driftline.detectors.config import ABSettings
>>> ab = ABTestDetector(ABSettings(control="A"), min_samples=10)
>>> for i in range(2000):
...     ab.update("A", "conversion", float(i % 10 == 0)); ab.update("B", "conversion", float(i % 5 == 0))
>>> lift = [r for r in ab.close_window() if r.statistic == "lift.B"][0]
>>> round(lift.value, 2), lift.exceeded, lift.drift
(0.1, True, True)
"""

from __future__ import annotations

import math
from typing import Any

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.config import ABSettings
from driftline.detectors.reference import prediction_features

__all__ = ["ABTestDetector", "compare_means"]

_MAX_VARIANTS = 20


def compare_means(n1: int, s1: float, q1: float, n2: int, s2: float, q2: float) -> tuple[str, float]:
    """p-value that two arms differ, from counts, sums and sums of squares."""
    from scipy.stats import norm, t

    m1, m2 = s1 / n1, s2 / n2
    if s1 == q1 and s2 == q2:  # every value 0 or 1: proportions
        pooled = (s1 + s2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        return "two_proportion_z", 1.0 if se == 0 else float(2 * norm.sf(abs(m1 - m2) / se))
    v1 = max(0.0, (q1 - n1 * m1 * m1) / max(1, n1 - 1))
    v2 = max(0.0, (q2 - n2 * m2 * m2) / max(1, n2 - 1))
    a, b = v1 / n1, v2 / n2
    if a + b == 0:
        return "welch_t", 1.0 if m1 == m2 else 0.0
    df = (a + b) ** 2 / ((a * a / max(1, n1 - 1)) + (b * b / max(1, n2 - 1)))
    return "welch_t", float(2 * t.sf(abs(m1 - m2) / math.sqrt(a + b), df))


class ABTestDetector(Detector):
    """Experiment arms of one model; ``update(variant, outcome, value)``."""

    name = "ab"

    def __init__(self, settings: ABSettings, *, min_samples: int = 100) -> None:
        super().__init__()
        self.settings = settings
        self.min_samples = min_samples
        self.outcomes: dict[str, dict[str, list[float]]] = {}  # name -> variant -> [n, sum, sumsq]
        self.preds: dict[str, list[float]] = {}  # variant -> [n, n_numeric, sum] for this window

    def observe_prediction(self, variant: str, prediction: Any) -> None:
        """Count a served prediction for its arm (per-window prediction metrics)."""
        if variant not in self.preds and len(self.preds) >= _MAX_VARIANTS:
            return
        acc = self.preds.setdefault(variant, [0, 0, 0.0])
        acc[0] += 1
        feats = prediction_features(prediction)
        x = feats.get("confidence", feats.get("prediction"))
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            acc[1] += 1
            acc[2] += float(x)

    def update(self, variant: str, outcome: str, value: float) -> None:  # type: ignore[override]
        if self.settings.outcomes and outcome not in self.settings.outcomes:
            return
        arms = self.outcomes.setdefault(outcome, {})
        if variant not in arms and len(arms) >= _MAX_VARIANTS:
            return
        acc = arms.setdefault(variant, [0, 0.0, 0.0])
        v = float(value)
        acc[0] += 1
        acc[1] += v
        acc[2] += v * v

    def close_window(self) -> tuple[DetectorResult, ...]:
        s = self.settings
        out: list[DetectorResult] = []
        for variant, (n, nn, total) in sorted(self.preds.items()):
            out.append(DetectorResult(self.name, "prediction", f"count.{variant}", n, None, None, False, 0, int(n)))
            if nn:
                out.append(DetectorResult(self.name, "prediction", f"mean.{variant}", total / nn, None,
                                          None, False, 0, int(nn)))
        for name, arms in sorted(self.outcomes.items()):
            ctrl = arms.get(s.control)
            for variant, (n, total, sq) in sorted(arms.items()):
                nc = int(ctrl[0]) if ctrl else 0
                out.append(DetectorResult(self.name, name, f"mean.{variant}", total / n, None, None,
                                          False, nc, int(n)))
                if variant == s.control or not ctrl or n < self.min_samples or nc < self.min_samples:
                    continue
                test, p = compare_means(int(n), total, sq, nc, ctrl[1], ctrl[2])
                lift = total / n - ctrl[1] / nc
                out.append(DetectorResult(self.name, name, f"lift.{variant}", lift, p, s.alpha, p < s.alpha,
                                          nc, int(n), (("test", test), ("control", s.control),
                                                       ("control_mean", ctrl[1] / nc))))
        self._drift = any(r.drift for r in out)
        self.preds = {}
        return self._judge(out)  # one verdict per outcome: any arm significantly off the control

    def get_state(self) -> dict[str, Any]:
        return {"outcomes": self.outcomes, "preds": self.preds, "drift": self._drift}

    def set_state(self, state: dict[str, Any]) -> None:
        self.outcomes = {k: {v: list(a) for v, a in arms.items()} for k, arms in state["outcomes"].items()}
        self.preds = {k: list(v) for k, v in state["preds"].items()}
        self._drift = bool(state["drift"])

    def reset(self) -> None:
        self.outcomes = {}
        self.preds = {}
        self._drift = False
        self._verdicts = {}
