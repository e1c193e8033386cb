"""One model's detectors: events in (predictions, labels, outcomes), results out per window.

:class:`ModelMonitor` is what :class:`~driftline.detectors.engine.DetectorEngine` keeps per
configured model: it routes each event to the version and segment streams, joins labels and
outcomes to predictions, pairs shadows with the served prediction, and closes the windows. What
it holds, its detectors by key and how that is saved (full, or as a delta since the last
checkpoint) are its base, :class:`~driftline.detectors.monitor_state.MonitorState`.

References built from traffic (``reference.source``: ``first_events``, ``rolling``,
``sampled``) keep their events in :attr:`ModelMonitor.bootstrap`, journaled with the pending
joins (:meth:`~driftline.detectors.monitor_state.MonitorState.journal`): a version's first
events under the bare version, a rolling or sampled builder's reservoirs
(:mod:`driftline.detectors.traffic`) under ``version + SEP + name``. A reference smaller than
the windows need (:func:`~driftline.detectors.reference.reference_size_needed`) is logged once
per version and noted on every data-drift summary row.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from driftline.detectors.base import (
    MEMORY_NOTICE_DETECTOR, REFERENCE_NOTICE_DETECTOR, STAT_JOINS_EVICTED, STAT_REFERENCE_MISSING, DetectorResult,
)
from driftline.detectors.monitor_state import MonitorState
from driftline.detectors.reference import Reference, from_events, prediction_features
from driftline.detectors.streams import PROVISIONAL, VersionStream
from driftline.detectors.traffic import builder_for
from driftline.sdk.contract.variants import is_shadow, pair_key

__all__ = ["ModelMonitor"]

log = logging.getLogger(__name__)
_TRAFFIC_SOURCES = ("rolling:", "sampled:")
_JOIN_KINDS = ("predictions", "labels", "shadows", "outcomes")  # what each of MonitorState.stores awaits


class ModelMonitor(MonitorState):
    """Every detector of one model, fed by the engine; results come out per window.

    With count windows, performance and error-stream results cover every ``window.size`` joined
    labels (bounds: the first and last prediction time among them) instead of "the labels that
    happened to arrive while a prediction window was open": the join order is the prediction
    order, so the rows are the same however the label and prediction topics interleave (two
    collectors, a replay after a crash). Time windows keep closing them with the prediction window.
    """

    # -- references ---------------------------------------------------------------------------
    def set_reference(self, ref: Reference) -> None:
        """Use ``ref`` for its version from the next window on (restarts that version's stream).

        With a rolling or sampled reference, a stored one older than the reference built from
        traffic is ignored (a restart offers the stored references again); a newer one (set
        while running) replaces it until the next rebuild.
        """
        if ref.model_version in self.versions.retired:
            return  # it stays stored: installed if the version gets events again (retire.py)
        cur = self.references.get(ref.model_version)
        if (cur is not None and self.cfg.reference.source in ("rolling", "sampled")
                and cur.source.startswith(_TRAFFIC_SOURCES) and ref.created_at <= cur.created_at):
            return
        self._install(ref)

    def _install(self, ref: Reference) -> None:
        self.estimation.flush()  # the events before it were estimated (and graded) with the old one
        self.references[ref.model_version] = ref
        self.streams.pop(ref.model_version, None)
        self.missing_warned.discard(ref.model_version)
        if ref.model_version == "*":
            self.missing_warned.clear()
        self.missing_reported = False

    @property
    def reference_missing(self) -> bool:
        """True while a version of this model has a ``stored`` reference source and none stored."""
        return bool(self.missing_warned)

    def _build(self, version: str, events: list[Any], source: str) -> Reference:
        r = self.cfg.reference
        ref = from_events(events, self.cfg.model, version, bins=r.bins, max_categories=r.max_categories,
                          categorical=r.categorical, source=source)
        # A reference from events lists features in set order, which differs between
        # processes (string hashing): sort them so every collector writes the same rows.
        return dataclasses.replace(ref, features=dict(sorted(ref.features.items())),
                                   outputs=dict(sorted(ref.outputs.items())))

    def stream(self, version: str, event: Mapping[str, Any]) -> VersionStream | None:
        st = self.streams.get(version)
        if st is not None and not st.provisional:
            return st
        r = self.cfg.reference
        ref = self.references.get(version) or self.references.get("*")
        if r.source == "first_events" and (ref is None or st is not None):
            buf = self.bootstrap.setdefault(version, [])
            buf.append({"features": event.get("features") or {}, "prediction": event.get("prediction")})
            if len(buf) >= r.first_events:
                self._install(self._build(version, buf, f"first_events:{len(buf)}"))
                del self.bootstrap[version]
                return None  # the events of the reference are not compared with themselves
            if st is not None:
                return st
            if not r.provisional_events or len(buf) < r.provisional_events:
                return None
            self._install(self._build(version, buf, f"{PROVISIONAL}{len(buf)}"))
            return None
        if ref is None:
            self.counts["no_reference"] += 1
            if r.source == "stored":  # traffic sources build theirs; a stored one must be set
                self.unreferenced[version] = self.unreferenced.get(version, 0) + 1
                if version not in self.missing_warned:
                    self.missing_warned.add(version)
                    log.warning("model %s version %s has no usable reference (reference.source: stored, none "
                                "stored): its data and prediction drift are not checked until one is set with "
                                "`driftline reference set`", self.cfg.model, version or "(none)")
            return None
        st = self.streams[version] = VersionStream(self.cfg, ref)
        return st

    # -- events ---------------------------------------------------------------------------------
    def on_prediction(self, ev: Mapping[str, Any], ts: float,
                      deferred: list[tuple[Any, ...]] | None = None) -> None:
        """Feed one prediction. With ``deferred``, the reference-based stream update is appended
        there as ``(stream, segs, features, prediction)`` for a batched ``update_many`` instead."""
        cfg = self.cfg
        version = ev.get("model_version") or ""
        if self.versions.seen(version, ts) is not None:
            self._revive(version)
        variant = ev.get("variant") or "primary"
        segs = self.segments.of(ev.get("tags"))
        prediction = ev.get("prediction")
        request_id = ev.get("request_id")
        if is_shadow(variant):
            # A shadow (shadow, shadow:NAME) sees the primary's inputs: it feeds divergence, not input drift.
            self._pair(request_id, ts, variant, version, segs, ev)
            return
        if cfg.shadow.enabled and request_id:
            self._pair(request_id, ts, None, version, segs, ev)
        if cfg.reference.source in ("rolling", "sampled"):
            b = self.traffic.get(version)
            if b is None:
                b = self.traffic[version] = builder_for(cfg.reference, version, self.bootstrap)
            b.add(ts, ev.get("features") or {}, prediction)
        st = self.stream(version, ev)
        self.estimation.observe(version, segs, ev, self.references)
        if st is not None:
            if deferred is None:
                st.update(segs, ev.get("features") or {}, prediction)
            else:
                deferred.append((st, segs, ev.get("features") or {}, prediction))
        if cfg.concept.enabled:
            eid = ev["event_id"]
            early = self.pending_labels.pop(eid)
            if early is not None:
                self._join(version, segs, prediction, ts, early[0], early[1], ev.get("features"))
            elif self.estimation.collecting and self.estimation.wants_features(version, prediction, self.references):
                # A regressor's estimator still to fit on the stream: DLE needs its inputs.
                self.pending_preds.put(eid, ts, [version, segs, prediction, ev.get("features") or {}])
            else:
                self.pending_preds.put(eid, ts, [version, segs, prediction])
        if cfg.ab.enabled:
            for seg in segs:
                self.arm(seg).observe_prediction(variant, prediction)
            self.pending_arms.put(ev["event_id"], ts, [variant, segs])
            if request_id:
                self.pending_arms.put("r:" + request_id, ts, [variant, segs])

    def _revive(self, version: str) -> None:
        """A retired version gets events again: it starts afresh, with its stored reference."""
        log.info("model %s version %s gets events again after it was retired: its detectors start afresh",
                 self.cfg.model, version or "(none)")
        ref = self.stored_reference(version)
        if ref is not None and version not in self.references:
            self._install(ref)

    def _pair(self, request_id: Any, ts: float, shadow: str | None, version: str, segs: list[str],
              ev: Mapping[str, Any]) -> None:
        """Pair a served event (``shadow`` None) and its shadows by request id and row (pair_key).

        The pending record of a request row holds the served half and the shadows waiting for it,
        by variant. The served half stays for later shadows only once several shadow variants have
        been seen; with one shadow a completed pair is dropped at once.
        """
        # Most models have no shadow: keeping every primary for pairing_timeout_s would double
        # the pending state. Primaries wait for a shadow once the model has sent one.
        if shadow is not None:
            self.shadow_seen = True
            self._shadow_variants.add(shadow)
        elif not self.shadow_seen:
            return
        if not request_id:
            return
        key = pair_key(str(request_id), ev.get("tags"))
        mine = {"prediction": ev.get("prediction"), "latency_ms": ev.get("latency_ms"),
                "status": ev.get("status", "ok"), "version": version, "segs": segs}
        hit = self.pending_shadow.get(key)
        rec = hit[1] if hit is not None and isinstance(hit[1], dict) else {}
        served, waiting = rec.get("p"), dict(rec.get("s") or {})
        keep = len(self._shadow_variants) > 1
        if shadow is None:
            for other in waiting.values():
                self._compare(mine, other)
            if waiting and not keep:
                self.pending_shadow.pop(key)
            else:
                self.pending_shadow.put(key, ts, {"p": mine, "s": {}})
        elif served is not None:
            self._compare(served, mine)
            if not keep:
                self.pending_shadow.pop(key)
        else:
            waiting[shadow] = mine
            self.pending_shadow.put(key, ts, {"p": None, "s": waiting})

    def _compare(self, primary: Mapping[str, Any], shadow: Mapping[str, Any]) -> None:
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
        pred_ts, (version, segs, prediction, *features) = hit
        return self._join(version, segs, prediction, pred_ts, ts, ev.get("label"), *features)

    def _join(self, version: str, segs: list[str], prediction: Any, pred_ts: float, label_ts: float,
              label: Any, features: Mapping[str, Any] | None = None) -> str:
        if abs(label_ts - pred_ts) > self.cfg.concept.label_horizon_s:
            self.counts["labels_late"] += 1
            return "late"
        self._concept_dirty = True
        self.counts["labels_joined"] += 1
        self.estimation.labelled(version, segs, prediction, pred_ts, label, self.references, features)
        outputs = prediction_features(prediction)  # once for every segment and the error stream
        for seg in segs:
            self.perf(f"{version}|{seg}").update(prediction, label, outputs)
        perf = self.perf(f"{version}|")
        err = perf.error_of(prediction, label, outputs)
        if err is not None:
            for det in self.error_detectors(version, perf.task):
                det.update(err)
        if self.by_joins:
            w = self.label_windows.setdefault(version, [0, pred_ts, pred_ts])
            w[0] += 1
            w[1], w[2] = min(w[1], pred_ts), max(w[2], pred_ts)
            if w[0] >= self.cfg.window.size:
                self.close_concept(version)
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
        for store in self.stores:
            store.expire(watermark)

    # -- windows --------------------------------------------------------------------------------
    def close_concept(self, version: str) -> None:
        """Close the label window of ``version`` (count windows) into :attr:`concept_closed`."""
        w = self.label_windows.pop(version, None)
        if w is None:
            return
        self._concept_dirty = True
        out = [(key.split("|", 1)[1], r) for key, det in self.performance.items()
               if key.split("|", 1)[0] == version for r in det.close_window()]
        out += [("", r) for det in self.errors.get(version, ()) for r in det.close_window()]
        self.concept_closed += [(version, seg, r, w[1], w[2]) for seg, r in out]

    def close_window(self, start: float | None = None, end: float | None = None,
                     ) -> list[tuple[str, str, DetectorResult]]:
        """(model_version, segment, result) for every detector (with count windows, performance
        and error streams close by joins instead: :meth:`close_concept`). ``start`` / ``end``:
        the window's event-time bounds (the traffic the alarm budget is spread over)."""
        out: list[tuple[str, str, DetectorResult]] = []
        self._concept_dirty = True
        if start is not None and end is not None:
            self.budget.observe_window(start, end)
        # One budget per model: every calibrated test of every version, segment and detector.
        tests = sum(st.calibrated_test_count() for st in self.streams.values())
        tests += self.estimation.test_count(self.references)
        b = self.budget
        budget = (b.alpha_window, b.per_test_alpha(tests), b.details(tests))
        if start is not None and end is not None:
            calibrated = self.cfg.data_drift.calibration == "budget"
            out += self.estimation.close(start, end, self.references, budget[1] if calibrated else None)
        for version, st in self.streams.items():
            out += [(version, seg, r) for seg, r in st.close(budget)]
            if st.size_note is not None and not st.provisional and version not in self.size_warned:
                self.size_warned.add(version)
                log.warning("model %s version %s: %s (%s)", self.cfg.model, version, st.size_note,
                            st.reference.source or "reference")
        # The window just closed was judged against the old reference; a new one starts now.
        for version, b in self.traffic.items():
            events = b.window_closed()
            if events:
                self._install(self._build(version, events, f"{b.kind}:{len(events)}"))
        if not self.by_joins:
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
        for version, n in self.unreferenced.items():
            out.append((version, "", DetectorResult(
                REFERENCE_NOTICE_DETECTOR, "*", STAT_REFERENCE_MISSING, float(n), None, None, False, 0, n,
                (("source", self.cfg.reference.source),))))
        self.unreferenced = {}
        # Joins evicted for room since the last window (memory budget, max_pending): said in the
        # window after the one they were evicted in at the latest, per kind.
        stores = tuple(zip(_JOIN_KINDS, self.stores))
        since = [(kind, s.evicted - self.counts.get(f"told_evicted_{kind}", 0)) for kind, s in stores]
        n = sum(k for _, k in since)
        if n > 0:
            for kind, s in stores:
                self.counts[f"told_evicted_{kind}"] = s.evicted
            out.append(("", "", DetectorResult(MEMORY_NOTICE_DETECTOR, "*", STAT_JOINS_EVICTED, float(n), None, None,
                                               False, 0, n, tuple(since))))
        return out
