"""Data quality per feature per window: missing values, type violations, values outside the
reference range, new categories, and features that appear or vanish.

Rates over present values (out of range, new categories) need ``min_present`` present values in
the window and in the reference; below that the row says ``enough_data: false`` and never drift.

It reads the same fixed-bin window counts as the drift detector (out-of-range values fall in the
overflow bins, new categories in the "other" bin), so when the engine runs both it passes one
shared :class:`~driftline.detectors.drift.HistogramSet` and each event is counted once.

>>> from driftline.detectors.config import QualitySettings
>>> from driftline.detectors.histogram import profile_numeric
>>> q = QualityDetector({"x": profile_numeric("x", [1.0, 2.0, 3.0], bins=2)},
...                     QualitySettings(min_present=1), min_samples=2)
>>> for v in (1.0, None, "oops", 9.0): q.update({"x": v, "y": 1})
>>> sorted({r.statistic for r in q.close_window() if r.drift})
['missing_rate', 'out_of_range_rate', 'type_violation_rate', 'unexpected_feature']
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.columns import FeatureRows, holds_exactly
from driftline.detectors.config import QualitySettings
from driftline.detectors.drift import HistogramSet
from driftline.detectors.histogram import NUMERIC, FeatureProfile

__all__ = ["QualityDetector"]

_MAX_UNEXPECTED = 50


class QualityDetector(Detector):
    """Quality rates of one stream; ``histograms`` may be shared with a drift detector."""

    name = "quality"

    def __init__(self, profiles: Mapping[str, FeatureProfile], settings: QualitySettings, *,
                 min_samples: int = 100, histograms: HistogramSet | None = None,
                 drift_excluded: Collection[str] = ()) -> None:
        super().__init__()
        self.settings = settings
        self.min_samples = min_samples
        self.profiles = dict(profiles)
        # Features data drift leaves out (data_drift.exclude, ids, timestamps) keep the pipeline
        # checks (missing, wrong type: an id that goes missing is a broken join) but not the
        # comparisons with the reference's values, which an id or a timestamp fails by
        # construction and which are drift by another name.
        self.drift_excluded = frozenset(drift_excluded)
        self._owner = histograms is None
        self.window = histograms if histograms is not None else HistogramSet(self.profiles)
        self._names = frozenset(self.profiles)
        self.unexpected: dict[str, int] = {}

    def update(self, features: Mapping[str, Any]) -> None:  # type: ignore[override]
        if self._owner:
            self.window.update(features)
        extra = features.keys() - self._names
        for name in extra:
            if name in self.unexpected or len(self.unexpected) < _MAX_UNEXPECTED:
                self.unexpected[name] = self.unexpected.get(name, 0) + 1

    def update_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """``update`` for each row, in order."""
        if self._owner:
            self.window.update_many(rows)
        names = self._names
        # The usual case at many features: the batch's matrix (built here or by the drift detector
        # sharing these histograms, once) says every row has every name, and no row has more. Only a
        # FeatureRows keeps its matrix: for a plain list it would be built again for nothing.
        if isinstance(rows, FeatureRows) and self.window.matrix(rows) is not None and holds_exactly(rows, names):
            return
        for features in rows:
            keys = features.keys()
            if keys <= names:  # the usual case: no feature outside the reference
                continue
            for name in keys - names:
                if name in self.unexpected or len(self.unexpected) < _MAX_UNEXPECTED:
                    self.unexpected[name] = self.unexpected.get(name, 0) + 1

    def _row(self, feature: str, stat: str, value: float, thr: float, prof: FeatureProfile,
             n: int, judged: bool, details: tuple[tuple[str, Any], ...] = ()) -> DetectorResult:
        return DetectorResult(self.name, feature, stat, value, None, thr, judged and value > thr,
                              prof.n + prof.missing, n, details)

    def close_window(self) -> tuple[DetectorResult, ...]:
        s = self.settings
        events = self.window.events
        out: list[DetectorResult] = []
        if events:
            judged = events >= self.min_samples
            for name, prof in self.profiles.items():
                h = self.window.hists[name]
                present = sum(h.counts)
                missing_rate = h.missing / events
                vanished = present == 0 and h.type_errors == 0 and prof.missing_rate < 1.0
                out.append(self._row(name, "missing_rate", missing_rate,
                                     min(1.0, prof.missing_rate + s.max_missing_rate_increase), prof,
                                     events, judged, (("vanished", vanished),)))
                out.append(self._row(name, "type_violation_rate", h.type_errors / events,
                                     s.max_type_violation_rate, prof, events, judged,
                                     (("expected", prof.dtype),)))
                if not present or name in self.drift_excluded:
                    continue
                # A rate over a handful of present values (a mostly-null feature) is noise, and
                # so are the min/max of a handful of reference values: no verdict below the floor.
                enough = present >= s.min_present and prof.n >= s.min_present
                sizes = (("enough_data", enough), ("reference_present", prof.n), ("min_present", s.min_present))
                if prof.kind == NUMERIC:
                    out.append(self._row(name, "out_of_range_rate", h.out_of_range() / present,
                                         s.max_out_of_range_rate, prof, present, judged and enough,
                                         (("reference_min", prof.minimum), ("reference_max", prof.maximum),
                                          *sizes)))
                else:
                    ref_other = prof.counts[-1] / prof.n if prof.n else 0.0
                    out.append(self._row(name, "new_category_rate", h.counts[-1] / present,
                                         ref_other + s.max_new_category_rate, prof, present, judged and enough,
                                         (("new_categories", tuple(sorted(h.unseen))), *sizes)))
            for name, count in sorted(self.unexpected.items()):
                out.append(DetectorResult(self.name, name, "unexpected_feature", count / events, None,
                                          0.0, True, 0, events, (("events", count),)))
        self._drift = any(r.drift for r in out)
        out = list(self._judge(out))  # one verdict per feature: any of its rates over its limit
        self.unexpected = {}
        if self._owner:
            self.window.clear()
        return tuple(out)

    def get_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {"unexpected": self.unexpected, "drift": self._drift}
        if self._owner:
            st["window"] = self.window.get_state()
        return st

    def set_state(self, state: dict[str, Any]) -> None:
        self.unexpected = dict(state["unexpected"])
        self._drift = bool(state["drift"])
        if self._owner and "window" in state:
            self.window.set_state(state["window"])

    def reset(self) -> None:
        self.unexpected = {}
        self._drift = False
        self._verdicts = {}
        if self._owner:
            self.window.clear()
