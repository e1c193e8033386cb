"""What one model's monitor holds, its detectors by key, and how that state is saved and restored.

:class:`MonitorState` is the base of :class:`~driftline.detectors.monitor.ModelMonitor`, which
feeds it events and closes its windows. Detectors are created on first use from stable keys
(version, segment, pair) so that a saved state can be rebuilt detector by detector. The pending
joins are journaled (:class:`~driftline.detectors.journal.JournaledStore`), so the engine can save
either the full state (:meth:`MonitorState.get_state`) or only what changed since the last
:meth:`MonitorState.checkpoint`: a patch of the bounded core (:meth:`MonitorState.core_delta`,
:mod:`driftline.detectors.statediff`) and a journal of references, bootstrap events and pending
joins (:meth:`MonitorState.journal`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from driftline.detectors.abtest import ABTestDetector
from driftline.detectors.budget import ENTRY_BYTES, REF_FACTOR, STATE_FACTOR, approx_bytes
from driftline.detectors.calibration import AlarmBudget
from driftline.detectors.concept import ErrorStreamDetector, PerformanceDetector
from driftline.detectors.config import ModelConfig
from driftline.detectors.estimate_stream import EstimationStreams
from driftline.detectors.journal import JournaledStore
from driftline.detectors.reference import Reference
from driftline.detectors.retire import VersionActivity
from driftline.detectors.shadow import ShadowDivergenceDetector
from driftline.detectors.statediff import SAME, apply, copy_json, diff
from driftline.detectors.streams import SegmentTracker, VersionStream
from driftline.detectors.traffic import SEP, builder_for

__all__ = ["MonitorState"]

_NO_PATCH = object()  # checkpoint() without a core_delta() before it


class MonitorState:
    """The detectors, pending joins, references and counters of one model, saved and restored.

    ``stored``: the stored reference of a version (None: none), to install again when a retired
    version gets events (:mod:`~driftline.detectors.retire`)."""

    def __init__(self, cfg: ModelConfig, references: Mapping[str, Reference], *,
                 stored: Callable[[str], Reference | None] | None = None) -> None:
        self.cfg = cfg
        self.references: dict[str, Reference] = dict(references)
        self.stored_reference = stored or (lambda version: None)
        self.versions = VersionActivity()  # last prediction per version; the retired ones
        self.streams: dict[str, VersionStream] = {}
        self.bootstrap: dict[str, list[Any]] = {}  # version -> first events; builders' reservoirs
        self.traffic: dict[str, Any] = {}  # version -> rolling / sampled reference builder
        self.size_warned: set[str] = set()  # versions whose too-small reference was logged
        # Versions with a stored reference source and none stored: predictions in the current
        # window (a notice row at its close), logged once per version and process.
        self.unreferenced: dict[str, int] = {}
        self.missing_warned: set[str] = set()
        self.missing_reported = False  # the engine has put missing_warned on its metrics
        self.segments = SegmentTracker(cfg.segments.tags, cfg.segments.max_segments)
        self.budget = AlarmBudget(cfg.data_drift.alarm_budget, cfg.window)
        c = cfg.concept
        self.pending_preds = JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_labels = JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_shadow = JournaledStore(cfg.shadow.pairing_timeout_s, cfg.shadow.max_pending)
        self.pending_arms = JournaledStore(cfg.ab.attribution_s, cfg.ab.max_pending)
        self.performance: dict[str, PerformanceDetector] = {}  # "version|segment"
        self.errors: dict[str, list[ErrorStreamDetector]] = {}  # version
        self.shadows: dict[str, ShadowDivergenceDetector] = {}  # "pv->sv|segment"
        self.ab: dict[str, ABTestDetector] = {}  # segment
        self.estimation = EstimationStreams(cfg)  # performance estimated per window (issue 18)
        self.counts = {"no_reference": 0, "labels_joined": 0, "labels_late": 0, "outcomes_unmatched": 0}
        self.by_joins = cfg.window.kind == "count"
        self.label_windows: dict[str, list[float]] = {}  # version -> [joins, first, last pred ts]
        self.concept_closed: list[tuple[str, str, Any, float, float]] = []
        self.shadow_seen = False
        self._shadow_variants: set[str] = set()  # rebuilt as shadows arrive (not saved)
        self._concept_dirty = True  # performance / error streams changed since the checkpoint
        self._core_patch: Any = _NO_PATCH  # the last core_delta(), applied to the mark on checkpoint
        self._shape: Any = None  # what the size estimate of state_bytes was made for
        self._core_bytes = 0
        self.checkpoint()
        self.measure()

    @property
    def state_bytes(self) -> int:
        """Estimated resident bytes of this model's state, pending joins apart (the memory budget,
        :mod:`~driftline.detectors.budget`): the core and references as of the last :meth:`measure`,
        the first-events buffers as they are now."""
        return self._core_bytes + ENTRY_BYTES * sum(len(b) for b in self.bootstrap.values())

    def measure(self) -> None:
        """Estimate the core's and the references' size again if their shape changed (a version,
        segment, detector or reference added or gone): the budget calls it for the models a
        chunk touched, so a model's estimate costs a few ``len`` calls per chunk, not a walk."""
        shape = (tuple(map(id, self.references.values())),
                 tuple((v, len(st.segments)) for v, st in self.streams.items()),
                 len(self.performance), len(self.errors), len(self.shadows), len(self.ab), len(self.traffic))
        if shape == self._shape:
            return
        self._shape = shape
        # A reference is held twice: its objects (profiles, the sample's rows) and its JSON, kept
        # once made (every full save and journal carries it): ~1.8x the JSON's length, measured.
        refs = int(REF_FACTOR * sum(approx_bytes(r.to_json()) for r in self.references.values()))
        self._core_bytes = int(STATE_FACTOR * approx_bytes(self.core_state())) + refs

    @property
    def stores(self) -> tuple[JournaledStore, ...]:
        return (self.pending_preds, self.pending_labels, self.pending_shadow, self.pending_arms)

    # -- detectors by key -----------------------------------------------------------------------
    def perf(self, key: str) -> PerformanceDetector:
        det = self.performance.get(key)
        if det is None:
            c = self.cfg.concept
            det = self.performance[key] = PerformanceDetector(
                c.task, positive_label=c.positive_label, min_samples=self.cfg.min_samples,
                degradation=c.degradation, baseline=dict(c.expected_metrics))
        return det

    def error_detectors(self, version: str, task: str) -> list[ErrorStreamDetector]:
        dets = self.errors.get(version)
        if dets is None:
            c = self.cfg.concept
            # DDM models a Bernoulli error rate: it only fits 0/1 errors (classifiers).
            methods = [m for m in c.detectors if not (m == "ddm" and task == "regression")]
            dets = self.errors[version] = [ErrorStreamDetector(m, adwin_delta=c.adwin_delta, seed=c.seed,
                                                               ddm_warm_start=c.ddm_warm_start)
                                           for m in methods]
        return dets

    def shadow(self, key: str) -> ShadowDivergenceDetector:
        det = self.shadows.get(key)
        if det is None:
            det = self.shadows[key] = ShadowDivergenceDetector(key.split("|")[0], self.cfg.shadow,
                                                                min_samples=self.cfg.min_samples)
        return det

    def arm(self, seg: str) -> ABTestDetector:
        det = self.ab.get(seg)
        if det is None:
            det = self.ab[seg] = ABTestDetector(self.cfg.ab, min_samples=self.cfg.min_samples)
        return det

    # -- retiring a version (detectors/retire.py) -----------------------------------------------
    def held_versions(self) -> set[str]:
        """Every version this monitor holds anything of (not ``"*"``: that reference is every version's)."""
        held = {*self.streams, *self.traffic, *self.errors, *self.label_windows, *self.missing_warned,
                *(v for v in self.references if v != "*"), *(k.split(SEP, 1)[0] for k in self.bootstrap),
                *(k.split("|", 1)[0] for k in self.performance), *self.estimation.versions()}
        for key in self.shadows:
            held.update(key.split("|", 1)[0].split("->", 1))
        return held

    def drop_version(self, version: str) -> None:
        """Forget everything of ``version`` but its pending joins (they expire under the label
        horizon); the next save, full or delta, no longer holds it."""
        self.estimation.flush()  # with the references they came with
        self.streams.pop(version, None)
        if version != "*":
            self.references.pop(version, None)
        self.traffic.pop(version, None)
        self.errors.pop(version, None)
        self.label_windows.pop(version, None)
        self.unreferenced.pop(version, None)
        self.missing_warned.discard(version)
        self.size_warned.discard(version)
        for key in [k for k in self.bootstrap if k.split(SEP, 1)[0] == version]:
            del self.bootstrap[key]
        for key in [k for k in self.performance if k.split("|", 1)[0] == version]:
            del self.performance[key]
        for key in [k for k in self.shadows if version in k.split("|", 1)[0].split("->", 1)]:
            del self.shadows[key]
        self.estimation.retire(version)
        self._concept_dirty = True  # the core patch must carry the removed performance / error keys

    # -- saving and restoring: the full state ------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        self._core_patch = _NO_PATCH  # a full save: the next checkpoint copies the core afresh
        return {
            "references": {v: r.to_json() for v, r in self.references.items()},
            "bootstrap": self.bootstrap,
            "segments": self.segments.get_state(),
            "streams": {v: st.get_state() for v, st in self.streams.items()},
            "pending": [s.get_state() for s in self.stores],
            "performance": {k: d.get_state() for k, d in self.performance.items()},
            "errors": {v: [[d.method, d.get_state()] for d in ds] for v, ds in self.errors.items()},
            "shadows": {k: d.get_state() for k, d in self.shadows.items()},
            "ab": {k: d.get_state() for k, d in self.ab.items()},
            "counts": self.counts,
            "label_windows": self.label_windows,
            "shadow_seen": self.shadow_seen,
            "traffic": self._traffic_state(),
            "budget": self.budget.get_state(),
            "estimation": self.estimation.get_state(),
            "versions": self.versions.get_state(),
        }

    def _traffic_state(self) -> dict[str, Any]:
        return {v: [b.kind, b.get_state()] for v, b in self.traffic.items()}

    def _set_traffic_state(self, state: dict[str, Any]) -> None:
        self.traffic = {}
        for v, (kind, st) in state.items():
            b = builder_for(self.cfg.reference, v, self.bootstrap)
            if b is not None and b.kind == kind:
                b.set_state(st)
                self.traffic[v] = b
        # The source changed since the save: what the old builders kept is of no use.
        for key in [k for k in self.bootstrap if SEP in k and k.split(SEP, 1)[0] not in self.traffic]:
            del self.bootstrap[key]

    def set_state(self, state: dict[str, Any]) -> None:
        self.references = {v: Reference.from_json(t) for v, t in state["references"].items()}
        self.bootstrap = {v: list(b) for v, b in state["bootstrap"].items()}
        self.segments.set_state(state["segments"])
        for v, st in state["streams"].items():
            self.streams[v] = VersionStream(self.cfg, self.references.get(v) or self.references["*"])
            self.streams[v].set_state(st)
        for store, st in zip(self.stores, state["pending"]):
            store.set_state(st)
        for k, st in state["performance"].items():
            self.perf(k).set_state(st)
        c = self.cfg.concept
        for v, dets in state["errors"].items():
            self.errors[v] = []
            for method, st in dets:
                det = ErrorStreamDetector(method, adwin_delta=c.adwin_delta, seed=c.seed,
                                          ddm_warm_start=c.ddm_warm_start)
                det.set_state(st)
                self.errors[v].append(det)
        for k, st in state["shadows"].items():
            self.shadow(k).set_state(st)
        for k, st in state["ab"].items():
            self.arm(k).set_state(st)
        self.counts.update(state["counts"])
        self.label_windows = {v: list(w) for v, w in state.get("label_windows", {}).items()}
        self.shadow_seen = bool(state.get("shadow_seen", True))
        self._set_traffic_state(state.get("traffic", {}))
        self.budget.set_state(state.get("budget"))
        self.estimation.set_state(state.get("estimation"))
        self.versions.set_state(state.get("versions"))
        self._core_patch = _NO_PATCH
        self.checkpoint()
        self.measure()

    # -- saving in pieces: the bounded core, and what changed since the last checkpoint ----------
    def core_state(self, *, changed_only: bool = False) -> dict[str, Any]:
        """Everything but references, bootstrap buffers and pending joins (bounded in size).

        ``changed_only``: parts not changed since :meth:`checkpoint` (segments no event fell in,
        concept detectors no label reached) are :data:`~driftline.detectors.statediff.SAME`."""
        concept = not changed_only or self._concept_dirty
        return {"segments": self.segments.get_state(),
                "streams": {v: st.get_state(changed_only=changed_only) for v, st in self.streams.items()},
                "performance": {k: d.get_state() for k, d in self.performance.items()} if concept else SAME,
                "errors": ({v: [[d.method, d.get_state()] for d in ds] for v, ds in self.errors.items()}
                           if concept else SAME),
                "shadows": {k: d.get_state() for k, d in self.shadows.items()},
                "ab": {k: d.get_state() for k, d in self.ab.items()},
                "counts": self.counts, "label_windows": self.label_windows, "shadow_seen": self.shadow_seen,
                "traffic": self._traffic_state(),
                "budget": self.budget.get_state(), "estimation": self.estimation.get_state(),
                "versions": self.versions.get_state()}

    def core_delta(self) -> dict[str, Any] | None:
        """The patch (:func:`~driftline.detectors.statediff.diff`) from the core as of the last
        :meth:`checkpoint` to the core now; None if nothing changed. Its size follows what changed
        (the bins events fell in), not the size of the core; :meth:`checkpoint` takes it as saved."""
        patch = diff(self._core_mark, self.core_state(changed_only=True))
        self._core_patch = patch
        return patch

    def journal(self) -> dict[str, Any]:
        """References, bootstrap events and pending joins changed since :meth:`checkpoint`."""
        boot = {}
        for v, buf in self.bootstrap.items():
            mark = self._boot_marks.get(v)
            same = mark is not None and mark[0] is buf and len(buf) >= mark[1]
            boot[v] = ["append", buf[mark[1]:]] if same else ["reset", buf]  # type: ignore[index]
        return {"references": {v: r.to_json() for v, r in self.references.items()
                               if self._ref_marks.get(v) is not r},
                "references_removed": [v for v in self._ref_marks if v not in self.references],
                "bootstrap": boot,
                "bootstrap_removed": [v for v in self._boot_marks if v not in self.bootstrap],
                "pending": [s.journal() for s in self.stores]}

    def references_changed(self) -> bool:
        """True if a reference was installed or removed since :meth:`checkpoint`."""
        marks = self._ref_marks
        return len(marks) != len(self.references) or any(marks.get(v) is not r for v, r in self.references.items())

    def checkpoint(self) -> None:
        """What the last save held is stored: deltas start again from here (nothing may have
        changed since that save's :meth:`core_delta` / :meth:`journal`)."""
        for s in self.stores:
            s.checkpoint()
        if self._core_patch is _NO_PATCH:  # a full save, a load, a new model: copy the core once
            self._core_mark = copy_json(self.core_state())
        else:
            self._core_mark = apply(self._core_mark, self._core_patch)
        self._core_patch = _NO_PATCH
        for st in self.streams.values():
            st.checkpoint()
        self._concept_dirty = False
        self._ref_marks = dict(self.references)
        self._boot_marks = {v: (buf, len(buf)) for v, buf in self.bootstrap.items()}
