"""What a model's reference-based detectors see: the segments of an event and, per model version,
the data-drift, prediction-drift, quality and multivariate detectors of each segment.

:class:`~driftline.detectors.monitor.ModelMonitor` keeps one :class:`SegmentTracker` and a
:class:`VersionStream` per model version.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from driftline.detectors.base import STAT_DRIFTED_SHARE, Detector, DetectorResult
from driftline.detectors.columns import FeatureRows
from driftline.detectors.config import ModelConfig
from driftline.detectors.drift import DataDriftDetector, HistogramSet, PredictionDriftDetector
from driftline.detectors.exclusions import exclusions
from driftline.detectors.quality import QualityDetector
from driftline.detectors.reference import Reference, prediction_features, reference_size_needed, size_note
from driftline.detectors.statediff import SAME

__all__ = ["SegmentTracker", "VersionStream", "PROVISIONAL"]

OTHER = "__other__"
#: source prefix of a provisional first-events reference (``reference.provisional_events``)
PROVISIONAL = "provisional:"


class SegmentTracker:
    """Segments of an event: '' (all traffic) plus 'tag=value' for configured tags, bounded."""

    def __init__(self, tags: tuple[str, ...], max_segments: int) -> None:
        self.tags = tags
        self.max_segments = max_segments
        self.known: dict[str, set[str]] = {t: set() for t in tags}

    def of(self, tags: Mapping[str, str] | None) -> list[str]:
        segs = [""]
        if not tags or not self.tags:
            return segs
        for t in self.tags:
            v = tags.get(t)
            if v is None:
                continue
            known = self.known[t]
            if v not in known:
                if len(known) >= self.max_segments:
                    v = OTHER  # past the bound every new value shares one segment
                else:
                    known.add(v)
            segs.append(f"{t}={v}")
        return segs

    def get_state(self) -> dict[str, Any]:
        return {t: sorted(v) for t, v in self.known.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        for t, vals in state.items():
            if t in self.known:
                self.known[t] = set(vals)


class VersionStream:
    """Reference-based detectors of one model version, per segment."""

    def __init__(self, cfg: ModelConfig, reference: Reference) -> None:
        self.cfg = cfg
        self.reference = reference
        self.segments: dict[str, list[Detector]] = {}
        #: segments updated since the last save (``True``: everything may have changed), so a
        #: delta save reads only those (:meth:`get_state` with ``changed_only``)
        self.dirty: set[str] | bool = True
        # One answer to "which features does drift judge" for every detector of this version.
        self.excluded = exclusions(reference.features, cfg.data_drift)
        #: judged against a provisional reference: rows say so and never drift
        self.provisional = reference.source.startswith(PROVISIONAL)
        #: "reference of 800 events; 10,000 recommended for 1,000-event windows", or None; known
        #: at once for count windows, after the first window closes for time windows
        self.size_note: str | None = None
        if cfg.window.kind == "count":
            self.size_note = size_note(reference.n_rows, cfg.window.size)
        self.multivariate: Detector | None = None
        mv = cfg.multivariate
        if mv.enabled and reference.sample:
            if mv.backend == "pca":
                from driftline.detectors.pca import PCADriftDetector
                self.multivariate = PCADriftDetector(reference.sample, mv, min_samples=cfg.min_samples,
                                                     exclude=tuple(self.excluded))
            elif mv.backend == "domain_classifier":
                from driftline.detectors.multivariate import DomainClassifierDetector
                self.multivariate = DomainClassifierDetector(reference.sample, mv, min_samples=cfg.min_samples,
                                                             exclude=tuple(self.excluded))
            else:
                from driftline.detectors.alibi_backend import AlibiDriftDetector
                self.multivariate = AlibiDriftDetector(reference.sample, mv, min_samples=cfg.min_samples,
                                                       exclude=tuple(self.excluded))

    def detectors(self, seg: str) -> list[Detector]:
        dets = self.segments.get(seg)
        if dets is None:
            cfg, ref = self.cfg, self.reference
            dets = []
            dd = cfg.data_drift
            # Every reference feature is counted: quality checks the ones drift leaves out too
            # (and must not call them unexpected), drift reads the ones it judges.
            shared = HistogramSet(ref.features)
            # Quality first: it reads the window the drift detector clears on close.
            if cfg.quality.enabled:
                dets.append(QualityDetector(ref.features, cfg.quality, min_samples=cfg.min_samples,
                                            histograms=shared if dd.enabled else None,
                                            drift_excluded=self.excluded))
            if cfg.data_drift.enabled:
                dets.append(DataDriftDetector(ref.features, cfg.data_drift, min_samples=cfg.min_samples,
                                              histograms=shared))
            if cfg.prediction_drift.enabled and ref.outputs:
                dets.append(PredictionDriftDetector(ref.outputs, cfg.data_drift.model_copy(
                    update={"include": (), "exclude": (), "auto_exclude": False}), min_samples=cfg.min_samples))
            self.segments[seg] = dets
        return dets

    def update(self, segs: list[str], features: Mapping[str, Any], prediction: Any) -> None:
        if self.dirty is not True:
            self.dirty.update(segs)
        outputs = None
        for seg in segs:
            for det in self.detectors(seg):
                if isinstance(det, PredictionDriftDetector):
                    if outputs is None:
                        outputs = prediction_features(prediction)
                    det.update(outputs)
                else:
                    det.update(features)
        if self.multivariate is not None:
            self.multivariate.update(features)

    def update_many(self, rows: list[tuple[list[str], Mapping[str, Any], Any]]) -> None:
        """``update(segs, features, prediction)`` for each row, in order, detector by detector."""
        by_seg: dict[str, list[int]] = {}
        for i, (segs, _, _) in enumerate(rows):
            for seg in segs:
                by_seg.setdefault(seg, []).append(i)
        if self.dirty is not True:
            self.dirty.update(by_seg)
        outputs: list[Any] = [None] * len(rows)
        everyone = len(rows)
        # One list of every row's features, and the numeric matrix the first detector builds from
        # it kept for the others (columns.py); a segment of some rows has its own.
        every = FeatureRows(r[1] for r in rows)
        for seg, idx in by_seg.items():
            feats = every if len(idx) == everyone else FeatureRows(every[i] for i in idx)
            for det in self.detectors(seg):
                if isinstance(det, PredictionDriftDetector):
                    outs = []
                    for i in idx:
                        o = outputs[i]
                        if o is None:
                            o = outputs[i] = prediction_features(rows[i][2])
                        outs.append(o)
                    det.update_many(outs)
                else:
                    det.update_many(feats)  # type: ignore[attr-defined]
        if self.multivariate is not None:
            many = getattr(self.multivariate, "update_many", None)
            if many is not None:
                many(every)
            else:
                for r in rows:
                    self.multivariate.update(r[1])

    def drift_detectors(self) -> list[DataDriftDetector]:
        """Data and prediction drift detectors of every segment seen (segments are never dropped,
        so this only grows: the budget's per-test level never loosens as segments appear)."""
        return [d for dets in self.segments.values() for d in dets if isinstance(d, DataDriftDetector)]

    def calibrated_test_count(self) -> int:
        """Calibrated tests per window over every segment and drift detector of this version
        (and the multivariate test, when it takes its level from the budget)."""
        tests = sum(d.calibrated_test_count() for d in self.drift_detectors())
        return tests + (1 if tests and hasattr(self.multivariate, "budget_alpha") else 0)

    def close(self, budget: tuple[float, float, tuple[tuple[str, Any], ...]] | None = None,
              ) -> list[tuple[str, DetectorResult]]:
        """Close every detector's window; ``budget`` (alpha_window, per-test alpha, details) is
        the model's, and the first drift detector of the whole-traffic segment writes its row."""
        self.dirty = True
        if budget is not None:
            first = True
            for det in self.drift_detectors():
                det.budget = budget
                det.emit_budget = first and det in self.segments.get("", ())
                first = first and not det.emit_budget
            if hasattr(self.multivariate, "budget_alpha") and self.calibrated_test_count():
                self.multivariate.budget_alpha = budget[1]  # type: ignore[union-attr]
        out = []
        for seg, dets in self.segments.items():
            for det in dets:
                out += [(seg, r) for r in det.close_window()]
        if self.multivariate is not None:
            out += [("", r) for r in self.multivariate.close_window()]
        out = self._note_size(out)
        if self.provisional:
            # No verdict on a reference this small (its own error would spend the false-alarm
            # budget); the values stay, and each statistic's own crossing stays in ``exceeded``.
            out = [(seg, dataclasses.replace(r, drift=False, exceeded=r.exceeded,
                                             details=r.details + (("provisional", True),)))
                   for seg, r in out]
        return out

    def _note_size(self, out: list[tuple[str, DetectorResult]]) -> list[tuple[str, DetectorResult]]:
        """A too-small reference is said on the data-drift summary row (feature ``*``) of every
        segment: ``reference_note`` and ``reference_recommended`` in its details."""
        shares = [i for i, (_, r) in enumerate(out)
                  if r.detector == DataDriftDetector.name and r.statistic == STAT_DRIFTED_SHARE]
        if not shares:
            return out
        if self.cfg.window.kind == "count":
            window = self.cfg.window.size
        else:  # time windows: the events of this window, all traffic
            window = max((out[i][1].current_size for i in shares if out[i][0] == ""), default=0)
            if window <= 0:
                return out
            self.size_note = size_note(self.reference.n_rows, window)
        if self.size_note is None:
            return out
        extra = (("reference_note", self.size_note), ("reference_recommended", reference_size_needed(window)))
        out = list(out)
        for i in shares:
            seg, r = out[i]
            out[i] = (seg, dataclasses.replace(r, details=r.details + extra))
        return out

    def get_state(self, *, changed_only: bool = False) -> Any:
        """The state; with ``changed_only``, :data:`~driftline.detectors.statediff.SAME` for the
        segments not updated since :meth:`checkpoint` (the whole stream when none was)."""
        dirty = self.dirty
        if changed_only and dirty is not True:
            if not dirty:
                return SAME
            return {"segments": {s: [d.get_state() for d in dets] if s in dirty else SAME
                                 for s, dets in self.segments.items()},
                    "multivariate": None if self.multivariate is None else self.multivariate.get_state()}
        return {"segments": {s: [d.get_state() for d in dets] for s, dets in self.segments.items()},
                "multivariate": None if self.multivariate is None else self.multivariate.get_state()}

    def checkpoint(self) -> None:
        """The state is saved: :meth:`get_state` with ``changed_only`` starts again from here."""
        self.dirty = set()

    def set_state(self, state: dict[str, Any]) -> None:
        self.dirty = True
        for seg, states in state["segments"].items():
            for det, st in zip(self.detectors(seg), states):
                det.set_state(st)
        if self.multivariate is not None and state.get("multivariate") is not None:
            self.multivariate.set_state(state["multivariate"])
