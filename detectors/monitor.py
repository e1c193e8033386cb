"""One model's detectors: per version and segment streams, joins, shadow pairs, A/B arms.

:class:`ModelMonitor` is what :class:`~driftline.detectors.engine.DetectorEngine` keeps per
configured model. Detectors are created on first use from stable keys (version, segment, pair)
so that a saved state can be rebuilt detector by detector.
"""

from __future__ import annotations

from typing import Any, Mapping

from driftline.detectors.abtest import ABTestDetector
from driftline.detectors.base import Detector, DetectorResult
from driftline.detectors.concept import ErrorStreamDetector, PerformanceDetector
from driftline.detectors.config import ModelConfig
from driftline.detectors.drift import DataDriftDetector, HistogramSet, PredictionDriftDetector
from driftline.detectors.join import PendingStore
from driftline.detectors.quality import QualityDetector
from driftline.detectors.reference import Reference, from_events, prediction_features
from driftline.detectors.shadow import ShadowDivergenceDetector

__all__ = ["ModelMonitor", "SegmentTracker", "VersionStream"]

OTHER = "__other__"


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
        self.multivariate: Detector | None = None
        mv = cfg.multivariate
        if mv.enabled and reference.sample:
            if mv.backend == "domain_classifier":
                from driftline.detectors.multivariate import DomainClassifierDetector
                self.multivariate = DomainClassifierDetector(reference.sample, mv, min_samples=cfg.min_samples)
            else:
                from driftline.detectors.alibi_backend import AlibiDriftDetector
                self.multivariate = AlibiDriftDetector(reference.sample, mv, min_samples=cfg.min_samples)

    def detectors(self, seg: str) -> list[Detector]:
        dets = self.segments.get(seg)
        if dets is None:
            cfg, ref = self.cfg, self.reference
            dets = []
            dd = cfg.data_drift
            profiles = {k: p for k, p in ref.features.items()
                        if (not dd.include or k in dd.include) and k not in dd.exclude}
            shared = HistogramSet(profiles)
            # Quality first: it reads the window the drift detector clears on close.
            if cfg.quality.enabled:
                dets.append(QualityDetector(profiles, cfg.quality, min_samples=cfg.min_samples,
                                            histograms=shared if dd.enabled else None))
            if cfg.data_drift.enabled:
                dets.append(DataDriftDetector(ref.features, cfg.data_drift, min_samples=cfg.min_samples,
                                              histograms=shared))
            if cfg.prediction_drift.enabled and ref.outputs:
                dets.append(PredictionDriftDetector(ref.outputs, cfg.data_drift.model_copy(
                    update={"include": (), "exclude": ()}), min_samples=cfg.min_samples))
            self.segments[seg] = dets
        return dets

    def update(self, segs: list[str], features: Mapping[str, Any], prediction: Any) -> None:
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
        outputs: list[Any] = [None] * len(rows)
        everyone = len(rows)
        for seg, idx in by_seg.items():
            whole = len(idx) == everyone
            feats = [r[1] for r in rows] if whole else [rows[i][1] for i in idx]
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
            for r in rows:
                self.multivariate.update(r[1])

    def close(self) -> list[tuple[str, DetectorResult]]:
        out = []
        for seg, dets in self.segments.items():
            for det in dets:
                out += [(seg, r) for r in det.close_window()]
        if self.multivariate is not None:
            out += [("", r) for r in self.multivariate.close_window()]
        return out

    def get_state(self) -> dict[str, Any]:
        return {"segments": {s: [d.get_state() for d in dets] for s, dets in self.segments.items()},
                "multivariate": None if self.multivariate is None else self.multivariate.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        for seg, states in state["segments"].items():
            for det, st in zip(self.detectors(seg), states):
                det.set_state(st)
        if self.multivariate is not None and state.get("multivariate") is not None:
            self.multivariate.set_state(state["multivariate"])


class ModelMonitor:
    """Every detector of one model, fed by the engine; results come out per window."""

    def __init__(self, cfg: ModelConfig, references: Mapping[str, Reference]) -> None:
        self.cfg = cfg
        self.references: dict[str, Reference] = dict(references)
        self.streams: dict[str, VersionStream] = {}
        self.bootstrap: dict[str, list[dict[str, Any]]] = {}  # version -> first events
        self.segments = SegmentTracker(cfg.segments.tags, cfg.segments.max_segments)
        c = cfg.concept
        self.pending_preds = PendingStore(c.label_horizon_s, c.max_pending)
        self.pending_labels = PendingStore(c.label_horizon_s, c.max_pending)
        self.pending_shadow = PendingStore(cfg.shadow.pairing_timeout_s, cfg.shadow.max_pending)
        self.pending_arms = PendingStore(cfg.ab.attribution_s, cfg.ab.max_pending)
        self.performance: dict[str, PerformanceDetector] = {}  # "version|segment"
        self.errors: dict[str, list[ErrorStreamDetector]] = {}  # version
        self.shadows: dict[str, ShadowDivergenceDetector] = {}  # "pv->sv|segment"
        self.ab: dict[str, ABTestDetector] = {}  # segment
        self.counts = {"no_reference": 0, "labels_joined": 0, "labels_late": 0, "outcomes_unmatched": 0}

    # -- references ---------------------------------------------------------------------------
    def set_reference(self, ref: Reference) -> None:
        """Use ``ref`` for its version from the next window on (restarts that version's stream)."""
        self.references[ref.model_version] = ref
        self.streams.pop(ref.model_version, None)

    def stream(self, version: str, event: Mapping[str, Any]) -> VersionStream | None:
        st = self.streams.get(version)
        if st is not None:
            return st
        ref = self.references.get(version) or self.references.get("*")
        if ref is None and self.cfg.reference.source == "first_events":
            buf = self.bootstrap.setdefault(version, [])
            buf.append({"features": event.get("features") or {}, "prediction": event.get("prediction")})
            if len(buf) < self.cfg.reference.first_events:
                return None
            r = self.cfg.reference
            ref = from_events(buf, self.cfg.model, version, bins=r.bins, max_categories=r.max_categories,
                              categorical=r.categorical, source=f"first_events:{len(buf)}")
            self.references[version] = ref
            del self.bootstrap[version]
            return None  # the events of the reference are not compared with themselves
        if ref is None:
            self.counts["no_reference"] += 1
            return None
        st = self.streams[version] = VersionStream(self.cfg, ref)
        return st

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

    # -- events ---------------------------------------------------------------------------------
    def on_prediction(self, ev: Mapping[str, Any], ts: float,
                      deferred: list[tuple[Any, ...]] | None = None) -> None:
        """Feed one prediction. With ``deferred``, the reference-based stream update is appended
        there as ``(stream, segs, features, prediction)`` for a batched ``update_many`` instead."""
        cfg = self.cfg
        version = ev.get("model_version") or ""
        variant = ev.get("variant") or "primary"
        segs = self.segments.of(ev.get("tags"))
        prediction = ev.get("prediction")
        request_id = ev.get("request_id")
        if variant == "shadow":
            # A shadow sees the primary's inputs: it feeds divergence, not input drift.
            self._pair(request_id, ts, "s", version, segs, ev)
            return
        if cfg.shadow.enabled and request_id:
            self._pair(request_id, ts, "p", version, segs, ev)
        st = self.stream(version, ev)
        if st is not None:
            if deferred is None:
                st.update(segs, ev.get("features") or {}, prediction)
            else:
                deferred.append((st, segs, ev.get("features") or {}, prediction))
        if cfg.concept.enabled:
            eid = ev["event_id"]
            early = self.pending_labels.pop(eid)
            if early is not None:
                self._join(version, segs, prediction, ts, early[0], early[1])
            else:
                self.pending_preds.put(eid, ts, [version, segs, prediction])
        if cfg.ab.enabled:
            for seg in segs:
                self.arm(seg).observe_prediction(variant, prediction)
            self.pending_arms.put(ev["event_id"], ts, [variant, segs])
            if request_id:
                self.pending_arms.put("r:" + request_id, ts, [variant, segs])

    def _pair(self, request_id: Any, ts: float, side: str, version: str, segs: list[str],
              ev: Mapping[str, Any]) -> None:
        if not request_id:
            return
        mine = {"prediction": ev.get("prediction"), "latency_ms": ev.get("latency_ms"),
                "status": ev.get("status", "ok"), "version": version, "segs": segs}
        other = self.pending_shadow.get(request_id)
        if other is None or other[1]["side"] == side:
            self.pending_shadow.put(request_id, ts, {**mine, "side": side})
            return
        self.pending_shadow.pop(request_id)
        o = other[1]
        primary, shadow = (o, mine) if side == "s" else (mine, o)
        pair = f"{primary['version']}->{shadow['version']}"
        for seg in primary["segs"]:
            self.shadow(f"{pair}|{seg}").update(primary, shadow)

    def on_label(self, ev: Mapping[str, Any], ts: float) -> str:
        """Join a label to its prediction: 'joined', 'late' or 'waiting' (prediction not seen yet)."""
        pid = ev["prediction_id"]
        hit = self.pending_preds.pop(pid)
        if hit is None:
            self.pending_labels.put(pid, ts, ev.get("label"))
            return "waiting"
        pred_ts, (version, segs, prediction) = hit
        return self._join(version, segs, prediction, pred_ts, ts, ev.get("label"))

    def _join(self, version: str, segs: list[str], prediction: Any, pred_ts: float, label_ts: float,
              label: Any) -> str:
        if abs(label_ts - pred_ts) > self.cfg.concept.label_horizon_s:
            self.counts["labels_late"] += 1
            return "late"
        self.counts["labels_joined"] += 1
        outputs = prediction_features(prediction)  # once for every segment and the error stream
        for seg in segs:
            self.perf(f"{version}|{seg}").update(prediction, label, outputs)
        perf = self.perf(f"{version}|")
        err = perf.error_of(prediction, label, outputs)
        if err is not None:
            for det in self.error_detectors(version, perf.task):
                det.update(err)
        return "joined"

    def on_outcome(self, ev: Mapping[str, Any]) -> bool:
        if not self.cfg.ab.enabled:
            return False
        hit = None
        if ev.get("prediction_id"):
            hit = self.pending_arms.get(ev["prediction_id"])
        if hit is None and ev.get("request_id"):
            hit = self.pending_arms.get("r:" + ev["request_id"])
        if hit is None:
            self.counts["outcomes_unmatched"] += 1
            return False
        variant, segs = hit[1]
        for seg in segs:
            self.arm(seg).update(variant, ev["name"], float(ev["value"]))
        return True

    def expire(self, watermark: float) -> None:
        """Forget what waited too long (in event time)."""
        for store in (self.pending_preds, self.pending_labels, self.pending_shadow, self.pending_arms):
            store.expire(watermark)

    # -- windows --------------------------------------------------------------------------------
    def close_window(self) -> list[tuple[str, str, DetectorResult]]:
        """(model_version, segment, result) for every detector."""
        out: list[tuple[str, str, DetectorResult]] = []
        for version, st in self.streams.items():
            out += [(version, seg, r) for seg, r in st.close()]
        for key, det in self.performance.items():
            version, seg = key.split("|", 1)
            out += [(version, seg, r) for r in det.close_window()]
        for version, dets in self.errors.items():
            for det in dets:
                out += [(version, "", r) for r in det.close_window()]
        for key, det in self.shadows.items():
            pair, seg = key.split("|", 1)
            out += [(pair.split("->")[0], seg, r) for r in det.close_window()]
        for seg, det in self.ab.items():
            out += [("", seg, r) for r in det.close_window()]
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "references": {v: r.to_json() for v, r in self.references.items()},
            "bootstrap": self.bootstrap,
            "segments": self.segments.get_state(),
            "streams": {v: st.get_state() for v, st in self.streams.items()},
            "pending": [s.get_state() for s in (self.pending_preds, self.pending_labels,
                                                 self.pending_shadow, self.pending_arms)],
            "performance": {k: d.get_state() for k, d in self.performance.items()},
            "errors": {v: [[d.method, d.get_state()] for d in ds] for v, ds in self.errors.items()},
            "shadows": {k: d.get_state() for k, d in self.shadows.items()},
            "ab": {k: d.get_state() for k, d in self.ab.items()},
            "counts": self.counts,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.references = {v: Reference.from_json(t) for v, t in state["references"].items()}
        self.bootstrap = {v: list(b) for v, b in state["bootstrap"].items()}
        self.segments.set_state(state["segments"])
        for v, st in state["streams"].items():
            self.streams[v] = VersionStream(self.cfg, self.references.get(v) or self.references["*"])
            self.streams[v].set_state(st)
        for store, st in zip((self.pending_preds, self.pending_labels, self.pending_shadow,
                              self.pending_arms), state["pending"]):
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
