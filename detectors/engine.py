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
with the window length. State is saved per model: ``state_for(model)`` (full) or
``state_for(model, delta=True)`` (changes since the last ``mark_saved(model)``), read back with
``load_model_state(model, full, deltas)``; ``changed()`` names the models to save and
``ensure_model`` adds a model seen without configuration.
:class:`~driftline.detectors.state.ModelStates` keeps all of this durable in the store.

With count windows, performance and error-stream rows cover every ``window.size`` joined labels
(bounds: first and last prediction time among them), so they do not depend on how the label and
prediction topics interleave.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import math
import time
from typing import Any, Callable, Mapping, Sequence

from driftline.detectors.base import MetricRow, result_to_row
from driftline.detectors.budget import MemoryBudget
from driftline.detectors.config import DetectorsConfig, ModelConfig
from driftline.detectors.estimate_stream import EstimateRow
from driftline.detectors.journal import deflate, inflate, merge_model_state
from driftline.detectors.metrics import EngineMetrics
from driftline.detectors.monitor import ModelMonitor
from driftline.detectors.reference import Reference
from driftline.detectors.retire import retire_idle
from driftline.detectors.windows import WindowClock
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION, timestamp_seconds
from driftline.sdk.contract.schema import NUMBER_TYPES, SCALAR_TYPES
from driftline.sdk.contract.variants import is_shadow

__all__ = ["DetectorEngine"]

log = logging.getLogger(__name__)
_MODEL_STATE_VERSION = 2


def _utc(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc)


class DetectorEngine:
    """Runs every configured detector over validated schema-v1 events.

    ``clock`` returns epoch seconds (used by :meth:`poll` when no ``now`` is given);
    ``registry`` receives the Prometheus metrics (none when ``None``); ``references`` maps
    ``(model, version)`` to a :class:`Reference` (version ``"*"`` matches any version);
    ``feature_detail_top`` bounds the per-feature Prometheus series (see
    :class:`~driftline.detectors.metrics.EngineMetrics`; ``None``: every feature).
    ``memory_budget_mb`` holds the pending joins of all models under one budget after each
    :meth:`observe_many` (:class:`~driftline.detectors.budget.MemoryBudget`; None: per-model caps only).
    The observe methods never raise: a bad event is logged and counted as ignored.
    """

    def __init__(self, config: DetectorsConfig, *, clock: Callable[[], float] = time.time,
                 registry: Any = None,
                 references: Mapping[tuple[str, str], Reference] | None = None,
                 feature_detail_top: int | None = None, memory_budget_mb: float | None = None) -> None:
        self.config = config
        self.clock = clock
        self.metrics = EngineMetrics(registry, feature_detail_top=feature_detail_top)
        self.budget = None if memory_budget_mb is None else MemoryBudget(memory_budget_mb, registry=registry)
        self.monitors: dict[str, ModelMonitor] = {}
        self.windows: dict[str, WindowClock] = {}
        self.watermarks: dict[str, float] = {}
        # References of models not (yet) configured: installed when ensure_model adds them.
        self._references: dict[tuple[str, str], Reference] = dict(references or {})
        self._changed: set[str] = set()  # models whose state changed since their last save
        # Parked models' once-per-process warnings (too small, no reference): not said again on reload.
        self._said: dict[str, tuple[set[str], set[str]]] = {}
        # Models changed since their last mark_saved by more than their events: a window closed,
        # the memory budget evicted (see replayable).
        self._settled: set[str] = set()
        for m in config.models:
            if m.model != "*":
                self.ensure_model(m)
        self._ready: list[MetricRow] = []
        self._estimates: list[EstimateRow] = []  # performance_estimates rows (poll_estimates)
        # Stream updates of observe_many, applied in batches (before any window closes).
        self._deferred: list[tuple[Any, ...]] | None = None
        self._event_counts: dict[tuple[str, str], int] | None = None  # observe_many's, for metrics

    def ensure_model(self, cfg: ModelConfig) -> bool:
        """Start monitoring ``cfg.model`` if it is not monitored yet; True if it was added."""
        if cfg.model in self.monitors:
            return False
        refs = {v: r for (model, v), r in self._references.items() if model == cfg.model}
        self.monitors[cfg.model] = ModelMonitor(cfg, refs, stored=self._stored_reference(cfg.model))
        self.windows[cfg.model] = WindowClock(cfg.window)
        return True

    def drop_model(self, model: str) -> None:
        """Forget a model's state (its owner is now another collector); ready rows stay."""
        self.monitors.pop(model, None)
        self.windows.pop(model, None)
        self.watermarks.pop(model, None)
        self._said.pop(model, None)
        self._changed.discard(model)
        self._settled.discard(model)
        self.metrics.drop(model)

    def parkable(self, model: str) -> bool:
        """True if ``model`` may leave memory now and come back from its saved state with nothing
        changed: it is saved (nothing changed since :meth:`mark_saved`), no row of it awaits
        :meth:`poll`, and no time window of it is open (that one closes on the clock, not on an
        event; a count window only closes on its events, so an open one may go)."""
        win = self.windows.get(model)
        return (model in self.monitors and model not in self._changed and model not in self._settled
                and (win is None or win.settings.kind == "count" or not win.is_open)
                and not any(r.model == model for r in self._ready)
                and not any(r.model == model for r in self._estimates))

    def park_model(self, model: str) -> None:
        """Let ``model``'s state go from memory (the memory budget, :mod:`~driftline.detectors.budget`);
        unlike :meth:`drop_model` its metrics stay: it is still this collector's. Load it again
        with :meth:`ensure_model` and :meth:`load_model_state` (what it logged once stays said)."""
        mon = self.monitors.get(model)
        if mon is not None:
            self._said[model] = (set(mon.size_warned), set(mon.missing_warned))
        self.monitors.pop(model, None)
        self.windows.pop(model, None)
        self.watermarks.pop(model, None)

    # -- references -----------------------------------------------------------------------------
    def set_reference(self, ref: Reference) -> None:
        """Install or replace the reference of ``ref.model`` / ``ref.model_version``."""
        self._references[(ref.model, ref.model_version)] = ref
        mon = self.monitors.get(ref.model)
        if mon is not None:
            mon.set_reference(ref)
            self.metrics.health(ref.model, reference_missing=mon.reference_missing)

    def _stored_reference(self, model: str) -> Callable[[str], Reference | None]:
        """``model``'s stored reference of a version, for a retired version that gets events again."""
        return lambda version: self._references.get((model, version))

    def reference(self, model: str, version: str) -> Reference | None:
        mon = self.monitors.get(model)
        return None if mon is None else mon.references.get(version)

    # -- events ---------------------------------------------------------------------------------
    def _monitor(self, ev: Mapping[str, Any], kind: str) -> tuple[ModelMonitor, float] | None:
        mon = self.monitors.get(ev.get("model", ""))
        if mon is None:
            self.metrics.ignore("unconfigured_model")
            return None
        ts = timestamp_seconds(ev["timestamp"])
        model = mon.cfg.model
        if ts > self.watermarks.get(model, float("-inf")):
            self.watermarks[model] = ts
        counts = self._event_counts
        if counts is None:
            self.metrics.event(model, kind)
        else:
            key = (model, kind)
            counts[key] = counts.get(key, 0) + 1
        self._changed.add(model)
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
            prediction, label = PREDICTION.type, LABEL.type
            for ev in events:
                kind = ev.get("type")
                if kind == prediction:
                    self.observe_prediction(ev)
                elif kind == label:
                    self.observe_label(ev)
                else:
                    self.observe_outcome(ev)
        finally:
            self._apply_deferred()
            self._deferred = None
            counts, self._event_counts = self._event_counts, None
            for (model, kind), n in (counts or {}).items():
                self.metrics.event(model, kind, n)
            if self.budget is not None:
                try:
                    evicted = self.budget.enforce(self.monitors, {m for m, _ in counts} if counts else self._changed)
                    gone = [m for m, n in evicted.items() if n]
                    self._settled.update(gone)
                    self._changed.update(gone)  # saved as a state delta, then it may be unloaded
                except Exception:  # the hot path never raises (STYLE 2)
                    log.exception("detector memory budget failed on a batch")
                    self.metrics.ignore("engine_error")

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
            got = self._monitor(event, PREDICTION.type)
            if got is None:
                return
            mon, ts = got
            model = mon.cfg.model
            win = self.windows[model]
            if win.before_event(ts):
                self._close(model)
                win.before_event(ts)
            mon.on_prediction(event, ts, self._deferred)
            if mon.missing_warned and not mon.missing_reported:  # said once, at once (not at window close)
                mon.missing_reported = True
                self.metrics.health(model, reference_missing=True)
            mon.expire(self.watermarks[model])
            if not is_shadow(event.get("variant")) and win.after_event(ts):
                self._close(model)
            if mon.concept_closed:
                self._drain(mon)
        except Exception:  # the hot path never raises (STYLE 2); count and log instead
            log.exception("detector engine failed on a prediction event")
            self.metrics.ignore("engine_error")

    def observe_label(self, event: Mapping[str, Any]) -> None:
        """Feed one label event; it is joined to its prediction within the label horizon."""
        try:
            got = self._monitor(event, LABEL.type)
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
            got = self._monitor(event, OUTCOME.type)
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
                for v, seg, r in self.monitors[model].close_window(start, end)]
        win.close()
        mon = self.monitors[model]
        self.metrics.health(model, pending=len(mon.pending_preds), reference_missing=mon.reference_missing,
                            grading_evicted=mon.estimation.grading.evicted)
        self._estimates += mon.estimation.drain()
        self.metrics.window(model, rows)
        self._ready.extend(rows)
        self._changed.add(model)
        self._settled.add(model)
        retired = retire_idle(mon, self.watermarks.get(model))  # versions idle past retire_version_after_s
        if retired:
            self.metrics.retired(model, retired)
            self._drain(mon)  # a count window's last label window, closed on retirement

    def _drain(self, mon: ModelMonitor) -> None:
        model = mon.cfg.model
        rows = [result_to_row(r, model=model, model_version=v, segment=seg, window_start=_utc(start),
                              window_end=_utc(end)) for v, seg, r, start, end in mon.concept_closed]
        mon.concept_closed.clear()
        self._settled.add(model)
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

    def poll_estimates(self) -> list[EstimateRow]:
        """The ``performance_estimates`` rows of the windows closed (or graded) since the last call."""
        rows, self._estimates = self._estimates, []
        return rows

    def flush(self) -> list[MetricRow]:
        """Close every open window now (for shutdown or a final report) and return all rows."""
        for model, win in self.windows.items():
            if win.is_open:
                self._close(model)
        for model, mon in self.monitors.items():
            for version in list(mon.label_windows):
                mon.close_concept(version)
            self._drain(mon)
            mon.estimation.grade(mon.references, self.watermarks.get(model, 0.0))  # labels since the last close
            self._estimates += mon.estimation.drain()
            self.metrics.health(model, grading_evicted=mon.estimation.grading.evicted)
        return self.poll(float("-inf"))

    def counts(self, model: str) -> dict[str, int]:
        """Join and bookkeeping counters of one model (labels joined/late/expired, ...)."""
        mon = self.monitors[model]
        mon.estimation.flush()  # its grading store's evictions
        return {**mon.counts, "labels_expired": mon.pending_labels.expired,
                "predictions_unlabelled": mon.pending_preds.expired,
                "joins_evicted": sum(s.evicted for s in mon.stores),
                "grading_evicted": mon.estimation.grading.evicted,
                "pending_predictions": len(mon.pending_preds)}

    # -- per-model state: what the collector saves after every chunk ---------------------------
    def state_for(self, model: str, *, delta: bool = False) -> bytes:
        """One model's state as a compressed JSON blob (its unpolled rows included).

        ``delta=True`` gives only what changed since :meth:`mark_saved`: pending joins,
        first-events buffers and references as journals, the bounded rest (histograms, windows)
        as a patch of the segments events fell in; fold such blobs into the full one before it
        with :func:`driftline.detectors.journal.merge_model_state`. Between this call and
        :meth:`mark_saved` the engine must not observe anything (the collector's one thread).
        """
        mon = self.monitors[model]
        doc: dict[str, Any] = {
            "version": _MODEL_STATE_VERSION, "model": model, "kind": "delta" if delta else "full",
            "window": self.windows[model].get_state(), "watermark": self.watermarks.get(model),
            "ready": [_row_json(r) for r in self._ready if r.model == model]}
        if not delta:
            doc["monitor"] = mon.get_state()
            # Level 1: several times faster than 6 and nearly as small on this JSON.
            return deflate(_json_state(doc))
        doc["core_patch"] = mon.core_delta()  # the bins and windows that changed, not every one
        # The journal (pending joins, first events) is most of a delta and holds only validated
        # event values and parsed timestamps, all finite: orjson writes it ~7x faster.
        head = _json_state(doc)
        return deflate(head[:-1] + b',"journal":' + _json_finite(mon.journal()) + b"}")

    def changed(self) -> set[str]:
        """Models whose state changed since their last :meth:`mark_saved` (a new set)."""
        return set(self._changed)

    def mark_saved(self, model: str) -> None:
        """The last :meth:`state_for` of ``model`` is stored: deltas start again from here."""
        self.monitors[model].checkpoint()
        self._changed.discard(model)
        self._settled.discard(model)

    def replayable(self, model: str) -> bool:
        """True if what changed in ``model`` since its last :meth:`mark_saved` follows from its
        events alone: no window closed (its rows are written), the memory budget evicted nothing
        and no reference was installed. Then saving those events (:meth:`mark_journaled`) is
        enough: :meth:`replay` after loading brings the state back."""
        return model not in self._settled and not self.monitors[model].references_changed()

    def mark_journaled(self, model: str) -> None:
        """``model``'s events since the last save are stored as events (deltas still start from
        the last :meth:`mark_saved`)."""
        self._changed.discard(model)

    def replay(self, model: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Observe ``model``'s journaled events again after :meth:`load_model_state` (their
        metrics were counted by the process that saw them first; nothing new to save)."""
        metrics, self.metrics = self.metrics, EngineMetrics(None)
        try:
            self.observe_many(events)
        finally:
            self.metrics = metrics
        self._changed.discard(model)

    def load_model_state(self, model: str, blob: bytes, deltas: Sequence[bytes] = ()) -> None:
        """Replace ``model``'s state with a saved one: a full blob and the deltas saved after it.

        The model must be monitored already (:meth:`ensure_model`): its settings come from the
        current configuration. A stored reference that differs from the one in the state
        (replaced while the collector was down) replaces it, restarting that version's windows.
        """
        doc = merge_model_state(json.loads(inflate(blob)), [json.loads(inflate(d)) for d in deltas])
        if doc.get("version") != _MODEL_STATE_VERSION or doc.get("model") != model:
            raise ValueError(f"not a version-{_MODEL_STATE_VERSION} state of model {model!r}")
        cfg = self.monitors[model].cfg
        mon = self.monitors[model] = ModelMonitor(cfg, {}, stored=self._stored_reference(model))
        mon.set_state(doc["monitor"])
        said = self._said.pop(model, None)
        if said is not None:
            mon.size_warned, mon.missing_warned = said
            mon.missing_reported = True
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
        self._settled.discard(model)
        if self.budget is not None:
            self.budget.reset_count(model, sum(s.evicted for s in mon.stores))


def _json_state(doc: Any) -> bytes:
    """Compact JSON of a state document, as ``json.dumps`` writes it once loaded again.

    orjson when every float in it is finite and it holds only what orjson writes as json does
    (str keys, 64-bit ints, no numpy scalars: it raises on the rest); otherwise json, which keeps
    a NaN statistic as NaN where orjson would write null. A 1,000-feature model's histograms are
    ~20,000 floats: json spent ~70 ms per save on them, the check costs ~1 ms."""
    if _finite(doc):
        try:
            return _json_finite(doc)
        except TypeError:
            pass
    return json.dumps(doc, separators=(",", ":")).encode()


_SEQUENCES = frozenset((list, tuple))


def _finite(value: Any) -> bool:
    """False if ``value`` (JSON-like) holds a NaN or infinite float anywhere."""
    kind = type(value)
    if kind is float:
        return value - value == 0.0
    if kind is dict:
        return all(map(_finite, value.values()))
    if kind is list or kind is tuple:
        return _finite_items(value)
    return True


def _finite_items(items: Sequence[Any]) -> bool:
    # Whole lists at C speed where they hold scalars (bins, sampled rows) or lists of them (a
    # patch's [index, value] pairs): a 1,000-feature model's delta has ~60,000 such lists.
    types = set(map(type, items))
    if types <= SCALAR_TYPES:
        if float not in types:
            return True
        floats = items if types <= NUMBER_TYPES else [v for v in items if type(v) is float]
        try:
            return all(map(math.isfinite, floats))
        except OverflowError:  # an int too large for a float: json writes it
            return False
    if types <= _SEQUENCES:
        return _finite_items(list(itertools.chain.from_iterable(items)))
    return all(map(_finite, items))


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
    if len(r) == len(MetricRow.COLUMNS) - 1:
        # Saved before ``exceeded`` existed, when ``drift`` was the statistic's own crossing.
        r = [*r, r[MetricRow.COLUMNS.index("drift")]]
    return MetricRow(*r[:5], _utc(r[5]), _utc(r[6]), *r[7:])
