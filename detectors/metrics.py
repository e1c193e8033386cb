"""Prometheus metrics of the detector engine, on an injected registry (no global default).

Bounded by the fleet, not by its features (issue 17: a gauge per model x version x segment x
feature x statistic gave 298,089 series at 1,000 models). Per model, a few health series:

* ``driftline_detector_events_total{model,type}`` -- events the engine consumed
* ``driftline_detector_windows_total{model}`` -- windows closed
* ``driftline_model_drift_windows_total{model}`` -- windows closed with a drift verdict on some
  feature (its rate against ``driftline_model_alarm_budget`` is the false-alarm budget's use)
* ``driftline_model_alarm_budget{model}`` -- the budget: probability of a false verdict per window
* ``driftline_model_drifting_verdicts{model}`` -- (version, detector, feature, segment) verdicts
  drifting in their latest window
* ``driftline_model_pending_predictions{model}`` -- predictions awaiting their labels (the label
  join's memory), as of the last closed window
* ``driftline_model_state{model,state}`` -- 1, on the model's state: ``warming_up`` (no window
  closed yet), ``ok``, ``drifting`` or ``no_reference``
* ``driftline_model_reference_missing{model}`` -- 1 while a version of the model has a stored
  reference source and none stored (no series otherwise): its drift is not checked
* ``driftline_estimation_grading_evicted_total{model}`` -- closed windows of performance
  estimation that stopped awaiting labels to stay under ``performance_estimation.grade_max_rows``
  (as of the last closed window; no series before the model's first)
* ``driftline_versions_retired_total{model}`` -- versions retired, idle past
  ``retire_version_after_s`` (:mod:`~driftline.detectors.retire`; no series before the first):
  their per-feature series go with them

Fleet-wide: ``driftline_detector_labels_total{result}`` (joined / late / waiting) and
``driftline_detector_ignored_total{reason}`` (no config, engine error, ...).

Per feature, only for the ``feature_detail_top`` groups (model, version, detector, feature,
segment) ranked first by drift verdict, then impact, then statistics over their threshold (all of
them with ``None``); every value is in ``driftline.drift_metrics`` whatever is exported:

* ``driftline_drift_statistic{model,version,detector,feature,segment,statistic}`` -- last value
* ``driftline_drift_detected{...same labels}`` -- the verdict: 1 if the detector judged the
  feature drifting in the last window, else 0 (the same on every statistic of the feature)
* ``driftline_drift_exceeded{...same labels}`` -- 1 if the statistic crossed its own threshold

A feature's ``impact`` series exists only while the feature drifts: its rows are written for
drifted features alone, so when a window of that detector and segment has none for it, its
series are removed (a left-over 1 would keep a "drift detected" alert firing).

The series are built when scraped, from what the engine reported (one lock; the storage thread
reports, the HTTP server's thread scrapes).
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from driftline.detectors.base import MetricRow

from driftline.detectors.base import STAT_ALARM_BUDGET, STAT_IMPACT, SUMMARY_STATISTICS

__all__ = ["EngineMetrics", "MODEL_STATES"]

_LABELS = ("model", "version", "detector", "feature", "segment", "statistic")
#: values of ``driftline_model_state``'s ``state`` label
MODEL_STATES = ("warming_up", "ok", "drifting", "no_reference")


@dataclass
class _Group:
    """The latest statistics of one (version, detector, feature, segment) of a model."""

    stats: dict[str, tuple[float, bool, bool]] = field(default_factory=dict)  # value, drift, exceeded
    drift: bool = False
    impact: float = 0.0

    def rank(self) -> tuple[bool, float, int]:
        return self.drift, self.impact, sum(1 for _, _, e in self.stats.values() if e)


@dataclass
class _Model:
    events: dict[str, float] = field(default_factory=dict)  # type -> count
    windows: int = 0
    drift_windows: int = 0
    alpha: float | None = None
    pending: int = 0
    grading_evicted: int = 0
    versions_retired: int = 0
    reference_missing: bool = False
    drifting: int = 0
    groups: dict[tuple[str, str, str, str], _Group] = field(default_factory=dict)

    def recount_drifting(self) -> None:
        """``drifting``: the per-feature verdicts (not the ``*`` summaries) drifting in their latest window."""
        self.drifting = sum(1 for (_, _, feature, _), g in self.groups.items() if g.drift and feature != "*")


class EngineMetrics:
    """All engine metrics; every method is a no-op when built without a registry.

    ``feature_detail_top``: per-feature series for that many groups at most (``None``: all).
    """

    def __init__(self, registry: "CollectorRegistry | None", *, feature_detail_top: int | None = None) -> None:
        self.enabled = registry is not None
        if feature_detail_top is not None and feature_detail_top < 0:
            raise ValueError(f"feature_detail_top must be >= 0 or None, not {feature_detail_top}")
        self.feature_detail_top = feature_detail_top
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        # (model, version, detector, segment) -> features with impact series
        self._impact: dict[tuple[str, str, str, str], set[str]] = {}
        if registry is None:
            return
        from prometheus_client import Counter

        self.labels = Counter("driftline_detector_labels_total", "Label events by join result",
                              ("result",), registry=registry)
        self.ignored = Counter("driftline_detector_ignored_total", "Events not used, by reason",
                               ("reason",), registry=registry)
        self._label_children = {r: self.labels.labels(r) for r in ("joined", "late", "waiting")}
        registry.register(_Collector(self))

    def _model(self, model: str) -> _Model:
        m = self._models.get(model)
        if m is None:
            m = self._models[model] = _Model()
        return m

    # -- what the engine reports -----------------------------------------------------------------
    def event(self, model: str, kind: str, n: int = 1) -> None:
        if self.enabled:
            with self._lock:
                ev = self._model(model).events
                ev[kind] = ev.get(kind, 0) + n

    def label(self, model: str, result: str) -> None:
        if self.enabled:
            child = self._label_children.get(result)
            (child if child is not None else self.labels.labels(result)).inc()

    def ignore(self, reason: str) -> None:
        if self.enabled:
            self.ignored.labels(reason).inc()

    def health(self, model: str, *, pending: int | None = None, reference_missing: bool | None = None,
               grading_evicted: int | None = None) -> None:
        """A model's pending predictions, whether it lacks a usable reference, and the windows its
        performance estimation stopped grading for room (a running total)."""
        if not self.enabled:
            return
        with self._lock:
            m = self._model(model)
            if pending is not None:
                m.pending = pending
            if reference_missing is not None:
                m.reference_missing = reference_missing
            if grading_evicted is not None:
                m.grading_evicted = grading_evicted

    def drop(self, model: str) -> None:
        """Forget a model (another collector owns it now): its series go with it."""
        with self._lock:
            self._models.pop(model, None)
            for key in [k for k in self._impact if k[0] == model]:
                del self._impact[key]

    def retired(self, model: str, versions: Iterable[str]) -> None:
        """``model``'s ``versions`` were retired: counted; their per-feature series go."""
        if not self.enabled:
            return
        gone = set(versions)
        with self._lock:
            m = self._model(model)
            m.versions_retired += len(gone)
            for key in [k for k in m.groups if k[0] in gone]:
                del m.groups[key]
            for key in [k for k in self._impact if k[0] == model and k[1] in gone]:
                del self._impact[key]
            m.recount_drifting()

    def window(self, model: str, rows: Iterable["MetricRow"]) -> None:
        if not self.enabled:
            return
        rows = list(rows)
        with self._lock:
            m = self._model(model)
            m.windows += 1
            if any(r.drift and r.statistic not in SUMMARY_STATISTICS for r in rows):
                m.drift_windows += 1
        self.rows(rows)

    def rows(self, rows: Iterable["MetricRow"]) -> None:
        """Keep the statistic, verdict and exceeded values of each row (the latest per series)."""
        if not self.enabled:
            return
        with self._lock:
            self._rows(rows)

    def _rows(self, rows: Iterable["MetricRow"]) -> None:
        # group -> (its last window in these rows, the features with an impact row in it)
        latest: dict[tuple[str, str, str, str], tuple[Any, set[str]]] = {}
        touched: set[str] = set()
        current, m = None, None
        # Unpacked, not by attribute: a window of a 1,000-feature model is ~10,000 rows.
        for (model, version, detector, feature, segment, window_start, _, statistic, value, _, _, drift, _, _, _,
             exceeded) in rows:
            if model != current:
                current, m = model, self._model(model)
                touched.add(model)
            gkey = (version, detector, feature, segment)
            g = m.groups.get(gkey)
            if g is None:
                g = m.groups[gkey] = _Group()
            drift = bool(drift)
            g.stats[statistic] = (value, drift, bool(exceeded))
            g.drift = drift
            if statistic == STAT_IMPACT:
                g.impact = value
            elif statistic == STAT_ALARM_BUDGET:
                m.alpha = value
            group = (model, version, detector, segment)
            seen = latest.get(group)
            if seen is None or window_start > seen[0]:
                seen = latest[group] = (window_start, set())
            if statistic == STAT_IMPACT and window_start == seen[0]:
                seen[1].add(feature)
        for group, (_, feats) in latest.items():
            model, version, detector, segment = group
            groups = self._models[model].groups
            for feature in self._impact.pop(group, set()) - feats:
                g = groups.get((version, detector, feature, segment))
                if g is not None:
                    g.stats.pop(STAT_IMPACT, None)
                    g.impact = 0.0
                    if not g.stats:
                        del groups[(version, detector, feature, segment)]
            if feats:
                self._impact[group] = feats
        for model in touched:
            m = self._models[model]
            m.recount_drifting()

    # -- what a scrape sees ------------------------------------------------------------------------
    def families(self) -> list[Any]:
        """The metric families of a scrape (prometheus_client's custom-collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        events = CounterMetricFamily("driftline_detector_events", "Events consumed by the detectors",
                                     labels=("model", "type"))
        windows = CounterMetricFamily("driftline_detector_windows", "Windows closed", labels=("model",))
        drift_windows = CounterMetricFamily("driftline_model_drift_windows",
                                            "Windows closed with a drift verdict on some feature", labels=("model",))
        alpha = GaugeMetricFamily("driftline_model_alarm_budget",
                                  "False-alarm budget: probability of a false verdict per window", labels=("model",))
        drifting = GaugeMetricFamily("driftline_model_drifting_verdicts",
                                     "Verdicts (version, detector, feature, segment) drifting in their latest window",
                                     labels=("model",))
        pending = GaugeMetricFamily("driftline_model_pending_predictions",
                                    "Predictions awaiting their labels, as of the last closed window", labels=("model",))
        grading = CounterMetricFamily("driftline_estimation_grading_evicted",
                                      "Closed estimation windows that stopped awaiting labels for room "
                                      "(performance_estimation.grade_max_rows)", labels=("model",))
        retired = CounterMetricFamily("driftline_versions_retired",
                                      "Model versions retired, idle past retire_version_after_s", labels=("model",))
        state = GaugeMetricFamily("driftline_model_state", "1 on the model's state", labels=("model", "state"))
        missing = GaugeMetricFamily("driftline_model_reference_missing",
                                    "1 while a version of the model has no usable reference", labels=("model",))
        stat = GaugeMetricFamily("driftline_drift_statistic", "Last value of a detector statistic", labels=_LABELS)
        detected = GaugeMetricFamily(
            "driftline_drift_detected", "Verdict: 1 if the detector judged the feature drifting in the last closed window",
            labels=_LABELS)
        exceeded = GaugeMetricFamily("driftline_drift_exceeded",
                                     "1 if the statistic crossed its own threshold in the last closed window",
                                     labels=_LABELS)
        with self._lock:
            for model, m in self._models.items():
                for kind, n in m.events.items():
                    events.add_metric((model, kind), n)
                windows.add_metric((model,), m.windows)
                drift_windows.add_metric((model,), m.drift_windows)
                if m.alpha is not None:
                    alpha.add_metric((model,), m.alpha)
                drifting.add_metric((model,), m.drifting)
                pending.add_metric((model,), m.pending)
                if m.grading_evicted:  # most models never evict: no series for them
                    grading.add_metric((model,), m.grading_evicted)
                if m.versions_retired:
                    retired.add_metric((model,), m.versions_retired)
                state.add_metric((model, _state(m)), 1.0)
                if m.reference_missing:
                    missing.add_metric((model,), 1.0)
            for model, (version, detector, feature, segment), g in self._top():
                for statistic, (value, drift, over) in g.stats.items():
                    labels = (model, version, detector, feature, segment, statistic)
                    stat.add_metric(labels, value)
                    detected.add_metric(labels, 1.0 if drift else 0.0)
                    exceeded.add_metric(labels, 1.0 if over else 0.0)
        return [events, windows, drift_windows, alpha, drifting, pending, grading, retired, state, missing, stat,
                detected, exceeded]

    def _top(self) -> Iterable[tuple[str, tuple[str, str, str, str], _Group]]:
        everything = ((model, key, g) for model, m in self._models.items() for key, g in m.groups.items())
        if self.feature_detail_top is None:
            return everything
        return heapq.nlargest(self.feature_detail_top, everything, key=lambda t: t[2].rank())


def _state(m: _Model) -> str:
    if m.reference_missing:
        return "no_reference"
    if m.drifting:
        return "drifting"
    return "ok" if m.windows else "warming_up"


class _Collector:
    """Registers the engine's scrape-time families with a registry."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Any]:
        # Names only (no samples), so registering does not build a scrape.
        for fam in self._metrics.families():
            fam.samples = []
            yield fam

    def collect(self) -> Iterator[Any]:
        yield from self._metrics.families()
