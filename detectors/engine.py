"""The detector engine the collector drives: events in, closed-window metric rows out.

>>> from driftline.detectors.config import DetectorsConfig
>>> from driftline.detectors.reference import from_events
>>> cfg = DetectorsConfig.from_mapping({"model": "m", "window": {"kind": "count", "size": 100},
...                                     "min_samples": 50})
>>> ev = lambda i, x: {"event_id": f"00000000-0000-7000-8000-{i:012d}", "model": "m",
...     "model_version": "v1", "timestamp": "2026-01-01T00:00:00Z", "features": {"x": x},
...     "prediction": 1}
>>> eng = DetectorEngine(cfg)
>>> eng.set_reference(from_events([ev(i, i % 10) for i in range(500)], "m", "v1"))
>>> for i in range(100): eng.observe_prediction(ev(i, 50 + i % 10))
>>> rows = eng.poll()
>>> any(r.drift and r.statistic == "wasserstein" for r in rows)
True

Per event the engine does O(features x segments) work on fixed-size histograms; nothing grows
with the window length. ``state()`` is a compressed JSON blob of everything observed (windows,
pending joins, river detectors, references); ``DetectorEngine.restore(config, blob)`` continues
exactly where the saved engine stopped. The collector saves each model on its own instead:
``state_for(model)`` (full) or ``state_for(model, delta=True)`` (changes since ``checkpoint``),
read back with ``load_model_state(model, full, deltas)``; ``ensure_model`` adds a model seen
without configuration.

With count windows, performance and error-stream rows cover every ``window.size`` joined labels
(bounds: first and last prediction time among them), so they do not depend on how the label and
prediction topics interleave.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import time
import zlib
from typing import Any, Callable, Mapping, Sequence

from driftline.detectors.base import MetricRow, result_to_row
from driftline.detectors.config import DetectorsConfig, ModelConfig
from driftline.detectors.join import PendingStore
from driftline.detectors.metrics import EngineMetrics
from driftline.detectors.monitor import ModelMonitor
from driftline.detectors.reference import Reference
from driftline.detectors.windows import WindowClock

__all__ = ["DetectorEngine", "parse_timestamp"]

log = logging.getLogger(__name__)
_STATE_VERSION = 1
_MODEL_STATE_VERSION = 2


_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds, for UTC stamps


def parse_timestamp(ts: str) -> float:
    """RFC 3339 (as validated by schema v1) to epoch seconds.

    UTC stamps ("...Z", as the SDK and the sidecar write them) parse their whole seconds once
    per second of traffic; the result is the same float ``datetime.timestamp()`` gives
    (whole microseconds over 10**6, fractions past the microsecond dropped).
    """
    if len(ts) >= 20 and ts[-1] == "Z" and ts[19] in ".Z":
        head = ts[:19]
        secs = _SECONDS.get(head)
        if secs is None:
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            secs = _SECONDS[head] = int(_dt.datetime.fromisoformat(head + "+00:00").timestamp())
        frac = ts[20:-1]
        if frac.isdigit() or not frac:
            return (secs * 1_000_000 + int((frac + "000000")[:6])) / 1_000_000
    return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _utc(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc)


class _JournaledStore(PendingStore):
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


class _Monitor(ModelMonitor):
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
        self.pending_preds = _JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_labels = _JournaledStore(c.label_horizon_s, c.max_pending)
        self.pending_shadow = _JournaledStore(cfg.shadow.pairing_timeout_s, cfg.shadow.max_pending)
        self.pending_arms = _JournaledStore(cfg.ab.attribution_s, cfg.ab.max_pending)
        self.by_joins = cfg.window.kind == "count"
        self.label_windows: dict[str, list[float]] = {}  # version -> [joins, first, last pred ts]
        self.concept_closed: list[tuple[str, str, Any, float, float]] = []
        self.shadow_seen = False
        self.checkpoint()

    @property
    def stores(self) -> tuple[_JournaledStore, ...]:
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


class DetectorEngine:
    """Runs every configured detector over validated schema-v1 events.

    ``clock`` returns epoch seconds (used by :meth:`poll` when no ``now`` is given);
    ``registry`` receives the Prometheus metrics (none when ``None``); ``references`` maps
    ``(model, version)`` to a :class:`Reference` (version ``"*"`` matches any version).
    The observe methods never raise: a bad event is logged and counted as ignored.
    """

    def __init__(self, config: DetectorsConfig, *, clock: Callable[[], float] = time.time,
                 registry: Any = None,
                 references: Mapping[tuple[str, str], Reference] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.metrics = EngineMetrics(registry)
        self.monitors: dict[str, _Monitor] = {}
        self.windows: dict[str, WindowClock] = {}
        self.watermarks: dict[str, float] = {}
        # References of models not (yet) configured: installed when ensure_model adds them.
        self._references: dict[tuple[str, str], Reference] = dict(references or {})
        #: models whose state changed since the caller last cleared this set (saves only these)
        self.dirty: set[str] = set()
        for m in config.models:
            if m.model != "*":
                self.ensure_model(m)
        self._ready: list[MetricRow] = []
        # Stream updates of observe_many, applied in batches (before any window closes).
        self._deferred: list[tuple[Any, ...]] | None = None
        self._event_counts: dict[tuple[str, str], int] | None = None  # observe_many's, for metrics

    def ensure_model(self, cfg: ModelConfig) -> bool:
        """Start monitoring ``cfg.model`` if it is not monitored yet; True if it was added."""
        if cfg.model in self.monitors:
            return False
        refs = {v: r for (model, v), r in self._references.items() if model == cfg.model}
        self.monitors[cfg.model] = _Monitor(cfg, refs)
        self.windows[cfg.model] = WindowClock(cfg.window)
        return True

    def drop_model(self, model: str) -> None:
        """Forget a model's state (its owner is now another collector); ready rows stay."""
        self.monitors.pop(model, None)
        self.windows.pop(model, None)
        self.watermarks.pop(model, None)
        self.dirty.discard(model)

    # -- references -----------------------------------------------------------------------------
    def set_reference(self, ref: Reference) -> None:
        """Install or replace the reference of ``ref.model`` / ``ref.model_version``."""
        self._references[(ref.model, ref.model_version)] = ref
        mon = self.monitors.get(ref.model)
        if mon is not None:
            mon.set_reference(ref)

    def reference(self, model: str, version: str) -> Reference | None:
        mon = self.monitors.get(model)
        return None if mon is None else mon.references.get(version)

    # -- events ---------------------------------------------------------------------------------
    def _monitor(self, ev: Mapping[str, Any], kind: str) -> tuple[_Monitor, float] | None:
        mon = self.monitors.get(ev.get("model", ""))
        if mon is None:
            self.metrics.ignore("unconfigured_model")
            return None
        ts = parse_timestamp(ev["timestamp"])
        model = mon.cfg.model
        if ts > self.watermarks.get(model, float("-inf")):
            self.watermarks[model] = ts
        counts = self._event_counts
        if counts is None:
            self.metrics.event(model, kind)
        else:
            key = (model, kind)
            counts[key] = counts.get(key, 0) + 1
        self.dirty.add(model)
        return mon, ts

    def observe_many(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Feed events of any type in order; the same result as one ``observe_*`` call each.

        The per-feature histogram updates of predictions are batched (columnar, see
        :meth:`HistogramSet.update_many`) between window closes, which is where most of the
        per-event cost was.
        """
        self._deferred = []
        self._event_counts = {} if self.metrics.enabled else None
        try:
            for ev in events:
                kind = ev.get("type")
                if kind == "prediction":
                    self.observe_prediction(ev)
                elif kind == "label":
                    self.observe_label(ev)
                else:
                    self.observe_outcome(ev)
        finally:
            self._apply_deferred()
            self._deferred = None
            counts, self._event_counts = self._event_counts, None
            for (model, kind), n in (counts or {}).items():
                self.metrics.events.labels(model, kind).inc(n)

    def _apply_deferred(self) -> None:
        deferred = self._deferred
        if not deferred:
            return
        self._deferred = []
        by_stream: dict[int, tuple[Any, list[tuple[Any, ...]]]] = {}
        for st, segs, features, prediction in deferred:
            entry = by_stream.get(id(st))
            if entry is None:
                entry = by_stream[id(st)] = (st, [])
            entry[1].append((segs, features, prediction))
        for st, rows in by_stream.values():
            try:
                st.update_many(rows)
            except Exception:  # the hot path never raises (STYLE 2)
                log.exception("detector engine failed on a batch of predictions")
                self.metrics.ignore("engine_error")

    def observe_prediction(self, event: Mapping[str, Any]) -> None:
        """Feed one prediction event (primary, shadow or an A/B arm)."""
        try:
            got = self._monitor(event, "prediction")
            if got is None:
                return
            mon, ts = got
            model = mon.cfg.model
            win = self.windows[model]
            if win.before_event(ts):
                self._close(model)
                win.before_event(ts)
            mon.on_prediction(event, ts, self._deferred)
            mon.expire(self.watermarks[model])
            if event.get("variant") != "shadow" and win.after_event(ts):
                self._close(model)
            if mon.concept_closed:
                self._drain(mon)
        except Exception:  # the hot path never raises (STYLE 2); count and log instead
            log.exception("detector engine failed on a prediction event")
            self.metrics.ignore("engine_error")

    def observe_label(self, event: Mapping[str, Any]) -> None:
        """Feed one label event; it is joined to its prediction within the label horizon."""
        try:
            got = self._monitor(event, "label")
            if got is None:
                return
            mon, ts = got
            result = mon.on_label(event, ts)
            self.metrics.label(mon.cfg.model, result)
            mon.expire(self.watermarks[mon.cfg.model])
            if mon.concept_closed:
                self._drain(mon)
        except Exception:
            log.exception("detector engine failed on a label event")
            self.metrics.ignore("engine_error")

    def observe_outcome(self, event: Mapping[str, Any]) -> None:
        """Feed one outcome event (A/B metrics)."""
        try:
            got = self._monitor(event, "outcome")
            if got is None:
                return
            mon, _ = got
            if not mon.on_outcome(event):
                self.metrics.ignore("outcome_unmatched")
        except Exception:
            log.exception("detector engine failed on an outcome event")
            self.metrics.ignore("engine_error")

    # -- windows --------------------------------------------------------------------------------
    def _close(self, model: str) -> None:
        self._apply_deferred()  # the window's counts must be complete before it is tested
        win = self.windows[model]
        start, end = win.bounds()
        ws, we = _utc(start), _utc(end)
        rows = [result_to_row(r, model=model, model_version=v, segment=seg, window_start=ws, window_end=we)
                for v, seg, r in self.monitors[model].close_window()]
        win.close()
        self.metrics.window(model, rows)
        self._ready.extend(rows)
        self.dirty.add(model)

    def _drain(self, mon: _Monitor) -> None:
        model = mon.cfg.model
        rows = [result_to_row(r, model=model, model_version=v, segment=seg, window_start=_utc(start),
                              window_end=_utc(end)) for v, seg, r, start, end in mon.concept_closed]
        mon.concept_closed.clear()
        self.metrics.rows(rows)  # gauges only: windows_total counts prediction windows
        self._ready.extend(rows)

    def poll(self, now: float | None = None) -> list[MetricRow]:
        """Close time windows whose end (plus grace) has passed; return every row not yet returned."""
        now = self.clock() if now is None else now
        for model, win in self.windows.items():
            if win.due(now):
                self._close(model)
        rows, self._ready = self._ready, []
        return rows

    def flush(self) -> list[MetricRow]:
        """Close every open window now (for shutdown or a final report) and return all rows."""
        for model, win in self.windows.items():
            if win.is_open:
                self._close(model)
        for mon in self.monitors.values():
            for version in list(mon.label_windows):
                mon.close_concept(version)
            self._drain(mon)
        return self.poll(float("-inf"))

    def counts(self, model: str) -> dict[str, int]:
        """Join and bookkeeping counters of one model (labels joined/late/expired, ...)."""
        mon = self.monitors[model]
        return {**mon.counts, "labels_expired": mon.pending_labels.expired,
                "predictions_unlabelled": mon.pending_preds.expired,
                "pending_predictions": len(mon.pending_preds)}

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> bytes:
        """Everything observed, as a compressed JSON blob (rows not yet polled included)."""
        doc = {
            "version": _STATE_VERSION,
            "models": {m: {"monitor": mon.get_state(), "window": self.windows[m].get_state(),
                           "watermark": self.watermarks.get(m)} for m, mon in self.monitors.items()},
            "ready": [_row_json(r) for r in self._ready],
        }
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)

    @classmethod
    def restore(cls, config: DetectorsConfig, blob: bytes, *, clock: Callable[[], float] = time.time,
                registry: Any = None) -> "DetectorEngine":
        """A new engine continuing from :meth:`state`. Models no longer configured are dropped;
        a model whose settings changed keeps its references and pending joins."""
        doc = json.loads(zlib.decompress(blob))
        if doc.get("version") != _STATE_VERSION:
            raise ValueError(f"detector state version {doc.get('version')!r}; this build reads {_STATE_VERSION}")
        eng = cls(config, clock=clock, registry=registry)
        for model, st in doc["models"].items():
            if model not in eng.monitors:
                continue
            eng.monitors[model].set_state(st["monitor"])
            eng.windows[model].set_state(st["window"])
            if st.get("watermark") is not None:
                eng.watermarks[model] = st["watermark"]
        eng._ready += [_row_of(r) for r in doc["ready"]]
        return eng

    # -- per-model state: what the collector saves after every chunk ---------------------------
    def state_for(self, model: str, *, delta: bool = False) -> bytes:
        """One model's state as a compressed JSON blob (its unpolled rows included).

        ``delta=True`` gives only what changed since :meth:`checkpoint` for the unbounded parts
        (pending joins, first-events buffers, references) plus the bounded rest; fold such blobs
        into the full one before it with :func:`driftline.detectors.sink.merge_model_state`.
        """
        mon = self.monitors[model]
        doc: dict[str, Any] = {
            "version": _MODEL_STATE_VERSION, "model": model, "kind": "delta" if delta else "full",
            "window": self.windows[model].get_state(), "watermark": self.watermarks.get(model),
            "ready": [_row_json(r) for r in self._ready if r.model == model]}
        if not delta:
            doc["monitor"] = mon.get_state()
            # Level 1: several times faster than 6 and nearly as small on this JSON.
            return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)
        doc["core"] = mon.core_state()
        # The journal (pending joins, first events) is most of a delta and holds only validated
        # event values and parsed timestamps, all finite: orjson writes it ~7x faster. The rest
        # goes through json, which keeps a NaN statistic as NaN where orjson would write null.
        head = json.dumps(doc, separators=(",", ":")).encode()
        return zlib.compress(head[:-1] + b',"journal":' + _json_finite(mon.journal()) + b"}", 1)

    def checkpoint(self, model: str) -> None:
        """The last :meth:`state_for` of ``model`` is saved: deltas start again from here."""
        self.monitors[model].checkpoint()

    def load_model_state(self, model: str, blob: bytes, deltas: Sequence[bytes] = ()) -> None:
        """Replace ``model``'s state with a saved one: a full blob and the deltas saved after it.

        The model must be monitored already (:meth:`ensure_model`): its settings come from the
        current configuration. A stored reference that differs from the one in the state
        (replaced while the collector was down) replaces it, restarting that version's windows.
        """
        from driftline.detectors.sink import merge_model_state

        doc = merge_model_state(json.loads(zlib.decompress(blob)),
                                [json.loads(zlib.decompress(d)) for d in deltas])
        if doc.get("version") != _MODEL_STATE_VERSION or doc.get("model") != model:
            raise ValueError(f"not a version-{_MODEL_STATE_VERSION} state of model {model!r}")
        cfg = self.monitors[model].cfg
        mon = self.monitors[model] = _Monitor(cfg, {})
        mon.set_state(doc["monitor"])
        for (m, v), ref in self._references.items():
            cur = mon.references.get(v)
            if m == model and (cur is None or (cur.created_at, cur.source) != (ref.created_at, ref.source)):
                mon.set_reference(ref)
        mon.checkpoint()
        win = self.windows[model] = WindowClock(cfg.window)
        win.set_state(doc["window"])
        self.watermarks.pop(model, None)
        if doc.get("watermark") is not None:
            self.watermarks[model] = doc["watermark"]
        self._ready = [r for r in self._ready if r.model != model] + [_row_of(r) for r in doc["ready"]]


def _json_finite(value: Any) -> bytes:
    """JSON of data known to hold no NaN or infinity (orjson when installed)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a core dependency
        return json.dumps(value, separators=(",", ":")).encode()
    return orjson.dumps(value)


def _row_json(r: MetricRow) -> list[Any]:
    t = r.as_tuple()
    return [*t[:5], r.window_start.timestamp(), r.window_end.timestamp(), *t[7:]]


def _row_of(r: list[Any]) -> MetricRow:
    return MetricRow(*r[:5], _utc(r[5]), _utc(r[6]), *r[7:])
