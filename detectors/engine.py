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
exactly where the saved engine stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import zlib
from typing import Any, Callable, Mapping

from driftline.detectors.base import MetricRow, result_to_row
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.metrics import EngineMetrics
from driftline.detectors.monitor import ModelMonitor
from driftline.detectors.reference import Reference
from driftline.detectors.windows import WindowClock

__all__ = ["DetectorEngine", "parse_timestamp"]

log = logging.getLogger(__name__)
_STATE_VERSION = 1


def parse_timestamp(ts: str) -> float:
    """RFC 3339 (as validated by schema v1) to epoch seconds."""
    return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _utc(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc)


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
        self.monitors: dict[str, ModelMonitor] = {}
        self.windows: dict[str, WindowClock] = {}
        self.watermarks: dict[str, float] = {}
        for m in config.models:
            refs = {v: r for (model, v), r in (references or {}).items() if model == m.model}
            self.monitors[m.model] = ModelMonitor(m, refs)
            self.windows[m.model] = WindowClock(m.window)
        self._ready: list[MetricRow] = []

    # -- references -----------------------------------------------------------------------------
    def set_reference(self, ref: Reference) -> None:
        """Install or replace the reference of ``ref.model`` / ``ref.model_version``."""
        mon = self.monitors.get(ref.model)
        if mon is not None:
            mon.set_reference(ref)

    def reference(self, model: str, version: str) -> Reference | None:
        mon = self.monitors.get(model)
        return None if mon is None else mon.references.get(version)

    # -- events ---------------------------------------------------------------------------------
    def _monitor(self, ev: Mapping[str, Any], kind: str) -> tuple[ModelMonitor, float] | None:
        mon = self.monitors.get(ev.get("model", ""))
        if mon is None:
            self.metrics.ignore("unconfigured_model")
            return None
        ts = parse_timestamp(ev["timestamp"])
        model = mon.cfg.model
        if ts > self.watermarks.get(model, float("-inf")):
            self.watermarks[model] = ts
        self.metrics.event(model, kind)
        return mon, ts

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
            mon.on_prediction(event, ts)
            mon.expire(self.watermarks[model])
            if event.get("variant") != "shadow" and win.after_event(ts):
                self._close(model)
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
        win = self.windows[model]
        start, end = win.bounds()
        ws, we = _utc(start), _utc(end)
        rows = [result_to_row(r, model=model, model_version=v, segment=seg, window_start=ws, window_end=we)
                for v, seg, r in self.monitors[model].close_window()]
        win.close()
        self.metrics.window(model, rows)
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
            "ready": [[*r.as_tuple()[:5], r.window_start.timestamp(), r.window_end.timestamp(),
                       *r.as_tuple()[7:]] for r in self._ready],
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
        for r in doc["ready"]:
            eng._ready.append(MetricRow(*r[:5], _utc(r[5]), _utc(r[6]), *r[7:]))
        return eng
