"""Per-model state the collector saves in small pieces: journaled pending joins and the monitor.

:class:`JournaledStore` is a :class:`~driftline.detectors.join.PendingStore` that remembers what
changed since its last checkpoint, so a save writes a few entries per event instead of every
prediction still waiting for its label. :class:`EngineMonitor` is the
:class:`~driftline.detectors.engine.DetectorEngine`'s per-model monitor: journaled joins, label
windows for count windows, and full or delta state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from driftline.detectors.config import ModelConfig
from driftline.detectors.join import PendingStore
from driftline.detectors.monitor import ModelMonitor
from driftline.detectors.reference import Reference

__all__ = ["EngineMonitor", "JournaledStore"]


class JournaledStore(PendingStore):
    """A :class:`PendingStore` that remembers what changed since the last checkpoint, so a save
    writes the change (a few entries per event) instead of every waiting prediction."""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        super().__init__(ttl_s, max_items)
        self.checkpoint()

    def checkpoint(self) -> None:
        self._new: dict[str, None] = {}  # inserted since the checkpoint, in insertion order
        self._changed: set[str] = set()  # present at the checkpoint, updated in place
        self._removed: set[str] = set()  # present at the checkpoint, gone now

    def _gone(self, key: str) -> None:
        if key in self._new:
            del self._new[key]
        else:
            self._removed.add(key)
            self._changed.discard(key)

    def put(self, key: str, ts: float, payload: Any) -> None:
        items = self._items
        if key in items:
            if key not in self._new:
                self._changed.add(key)
            items[key] = (ts, payload)
            return
        items[key] = (ts, payload)
        self._new[key] = None
        if len(items) > self.max_items:
            old, _ = items.popitem(last=False)
            self.evicted += 1
            self._gone(old)

    def pop(self, key: str) -> tuple[float, Any] | None:
        hit = self._items.pop(key, None)
        if hit is not None:
            self._gone(key)
        return hit

    def expire(self, watermark: float) -> int:
        limit = watermark - self.ttl_s
        items, n = self._items, 0
        while items:  # arrival order ~ event time: stop at the first young entry
            key = next(iter(items))
            if items[key][0] >= limit:
                break
            del items[key]
            self._gone(key)
            n += 1
        self.expired += n
        return n

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.checkpoint()

    def journal(self) -> dict[str, Any]:
        items = self._items
        return {"removed": sorted(self._removed), "changed": [[k, *items[k]] for k in self._changed],
                "new": [[k, *items[k]] for k in self._new], "expired": self.expired, "evicted": self.evicted}


class EngineMonitor(ModelMonitor):
    """The engine's per-model monitor: journaled joins, and (count windows) label windows.

    With count windows, performance and error-stream results cover every ``window.size`` joined
    labels (bounds: the first and last prediction time among them) instead of "the labels that
    happened to arrive while a prediction window was open": the join order is the prediction
    order, so the rows are the same however the label and prediction topics interleave (two
    collectors, a replay after a crash). Time windows keep closing them with the prediction window.
    """

    def __init__(self, cfg: ModelConfig, references: Mapping[str, Reference]) -> None:
        super().__init__(cfg, references)
        c = cfg.concept
        self.pending_preds = JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_labels = JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_shadow = JournaledStore(cfg.shadow.pairing_timeout_s, cfg.shadow.max_pending)
        self.pending_arms = JournaledStore(cfg.ab.attribution_s, cfg.ab.max_pending)
        self.by_joins = cfg.window.kind == "count"
        self.label_windows: dict[str, list[float]] = {}  # version -> [joins, first, last pred ts]
        self.concept_closed: list[tuple[str, str, Any, float, float]] = []
        self.shadow_seen = False
        self.checkpoint()

    @property
    def stores(self) -> tuple[JournaledStore, ...]:
        return (self.pending_preds, self.pending_labels, self.pending_shadow, self.pending_arms)  # type: ignore[return-value]

    def stream(self, version: str, event: Mapping[str, Any]) -> Any:
        st = self.streams.get(version)
        if st is not None:
            return st
        before = self.references.get(version)
        st = super().stream(version, event)
        ref = self.references.get(version)
        if ref is not None and ref is not before:
            # A first-events reference lists features in set order, which differs between
            # processes (string hashing): sort them so every collector writes the same rows.
            self.references[version] = dataclasses.replace(
                ref, features=dict(sorted(ref.features.items())), outputs=dict(sorted(ref.outputs.items())))
        return st

    def _pair(self, request_id: Any, ts: float, side: str, version: str, segs: list[str],
              ev: Mapping[str, Any]) -> None:
        # Most models have no shadow: keeping every primary for pairing_timeout_s would double
        # the pending state. Primaries wait for a shadow once the model has sent one.
        if side == "s":
            self.shadow_seen = True
        elif not self.shadow_seen:
            return
        super()._pair(request_id, ts, side, version, segs, ev)

    def _join(self, version: str, segs: list[str], prediction: Any, pred_ts: float, label_ts: float,
              label: Any) -> str:
        result = super()._join(version, segs, prediction, pred_ts, label_ts, label)
        if result == "joined" and self.by_joins:
            w = self.label_windows.setdefault(version, [0, pred_ts, pred_ts])
            w[0] += 1
            w[1], w[2] = min(w[1], pred_ts), max(w[2], pred_ts)
            if w[0] >= self.cfg.window.size:
                self.close_concept(version)
        return result

    def close_concept(self, version: str) -> None:
        w = self.label_windows.pop(version, None)
        if w is None:
            return
        out = [(key.split("|", 1)[1], r) for key, det in self.performance.items()
               if key.split("|", 1)[0] == version for r in det.close_window()]
        out += [("", r) for det in self.errors.get(version, ()) for r in det.close_window()]
        self.concept_closed += [(version, seg, r, w[1], w[2]) for seg, r in out]

    def close_window(self) -> list[tuple[str, str, Any]]:
        if not self.by_joins:
            return super().close_window()
        perf, errors = self.performance, self.errors
        self.performance, self.errors = {}, {}  # closed by close_concept instead
        try:
            return super().close_window()
        finally:
            self.performance, self.errors = perf, errors

    # -- state: full, or what changed since the last checkpoint ----------------------------------
    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "label_windows": self.label_windows, "shadow_seen": self.shadow_seen}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.label_windows = {v: list(w) for v, w in state.get("label_windows", {}).items()}
        self.shadow_seen = bool(state.get("shadow_seen", True))
        self.checkpoint()

    def core_state(self) -> dict[str, Any]:
        """Everything but references, bootstrap buffers and pending joins (bounded in size)."""
        return {"segments": self.segments.get_state(),
                "streams": {v: st.get_state() for v, st in self.streams.items()},
                "performance": {k: d.get_state() for k, d in self.performance.items()},
                "errors": {v: [[d.method, d.get_state()] for d in ds] for v, ds in self.errors.items()},
                "shadows": {k: d.get_state() for k, d in self.shadows.items()},
                "ab": {k: d.get_state() for k, d in self.ab.items()},
                "counts": self.counts, "label_windows": self.label_windows, "shadow_seen": self.shadow_seen}

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

    def checkpoint(self) -> None:
        for s in self.stores:
            s.checkpoint()
        self._ref_marks = dict(self.references)
        self._boot_marks = {v: (buf, len(buf)) for v, buf in self.bootstrap.items()}
