"""Prometheus metrics of the detector engine, on an injected registry (no global default).

* ``driftline_drift_statistic{model,version,detector,feature,segment,statistic}`` -- last value
* ``driftline_drift_detected{...same labels}`` -- the verdict: 1 if the detector judged the
  feature drifting in the last window, else 0 (the same on every statistic of the feature)
* ``driftline_drift_exceeded{...same labels}`` -- 1 if the statistic crossed its own threshold

A feature's ``impact`` series exists only while the feature drifts: its rows are written for
drifted features alone, so when a window of that detector and segment has none for it, its
series are removed (a left-over 1 would keep a "drift detected" alert firing).
* ``driftline_detector_events_total{model,type}`` -- events the engine consumed
* ``driftline_detector_labels_total{model,result}`` -- labels joined / late / unmatched
* ``driftline_detector_windows_total{model}`` -- windows closed
* ``driftline_detector_ignored_total{reason}`` -- events not used (no config, no reference, ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from driftline.detectors.base import MetricRow

from driftline.detectors.base import STAT_IMPACT

__all__ = ["EngineMetrics"]

_LABELS = ("model", "version", "detector", "feature", "segment", "statistic")


class EngineMetrics:
    """All engine metrics; every method is a no-op when built without a registry."""

    def __init__(self, registry: "CollectorRegistry | None") -> None:
        self.enabled = registry is not None
        self._children: dict[tuple[Any, ...], Any] = {}
        # (model, version, detector, segment) -> features with impact series
        self._impact: dict[tuple[str, str, str, str], set[str]] = {}
        if registry is None:
            return
        from prometheus_client import Counter, Gauge

        self.statistic = Gauge("driftline_drift_statistic", "Last value of a detector statistic",
                               _LABELS, registry=registry)
        self.detected = Gauge("driftline_drift_detected",
                              "Verdict: 1 if the detector judged the feature drifting in the last closed window",
                              _LABELS, registry=registry)
        self.exceeded = Gauge("driftline_drift_exceeded",
                              "1 if the statistic crossed its own threshold in the last closed window",
                              _LABELS, registry=registry)
        self.events = Counter("driftline_detector_events_total", "Events consumed by the detectors",
                              ("model", "type"), registry=registry)
        self.labels = Counter("driftline_detector_labels_total", "Label events by join result",
                              ("model", "result"), registry=registry)
        self.windows = Counter("driftline_detector_windows_total", "Windows closed",
                               ("model",), registry=registry)
        self.ignored = Counter("driftline_detector_ignored_total", "Events not used, by reason",
                               ("reason",), registry=registry)

    def event(self, model: str, kind: str) -> None:
        if self.enabled:
            self._child(self.events, model, kind).inc()

    def label(self, model: str, result: str) -> None:
        if self.enabled:
            self._child(self.labels, model, result).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        # ``labels()`` validates and hashes on every call; events come by the thousand per
        # second and rows by the hundred per window, so keep the children (label sets are
        # bounded: models, types, and features x statistics x segments).
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def ignore(self, reason: str) -> None:
        if self.enabled:
            self.ignored.labels(reason).inc()

    def window(self, model: str, rows: Iterable["MetricRow"]) -> None:
        if not self.enabled:
            return
        self._child(self.windows, model).inc()
        self.rows(rows)

    def rows(self, rows: Iterable["MetricRow"]) -> None:
        """Set the statistic, verdict and exceeded gauges of each row."""
        if not self.enabled:
            return
        # group -> (its last window in these rows, the features with an impact row in it)
        latest: dict[tuple[str, str, str, str], tuple[Any, set[str]]] = {}
        for r in rows:
            key = (r.model, r.model_version, r.detector, r.feature, r.segment, r.statistic)
            self._child(self.statistic, *key).set(r.value)
            self._child(self.detected, *key).set(1.0 if r.drift else 0.0)
            self._child(self.exceeded, *key).set(1.0 if r.exceeded else 0.0)
            group = (r.model, r.model_version, r.detector, r.segment)
            seen = latest.get(group)
            if seen is None or r.window_start > seen[0]:
                seen = latest[group] = (r.window_start, set())
            if r.statistic == STAT_IMPACT and r.window_start == seen[0]:
                seen[1].add(r.feature)
        for group, (_, feats) in latest.items():
            model, version, detector, segment = group
            for feature in self._impact.pop(group, set()) - feats:
                key = (model, version, detector, feature, segment, STAT_IMPACT)
                for metric in (self.statistic, self.detected, self.exceeded):
                    metric.remove(*key)
                    self._children.pop((id(metric), *key), None)
            if feats:
                self._impact[group] = feats
