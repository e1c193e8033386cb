"""A :class:`~driftline.detectors.engine.DetectorEngine`'s per-model state, kept durable in
``driftline.detector_state`` so that each event changes the detectors exactly once.

:class:`ModelStates` is the one interface between a stream that feeds the engine (the
collector's detector stage) and the store:

* :meth:`~ModelStates.refresh` adds models seen for the first time (their own settings, the
  ``model: "*"`` document's, or the defaults) and loads their saved state, whichever process saved
  it; models whose source jumped ahead are reloaded when another process saved them meanwhile;
* :meth:`~ModelStates.position` / :meth:`~ModelStates.observed` hold, per model, the position of
  the last event observed in each source (a Kafka topic and partition): it is saved with the
  state, so a replay can tell what the state already holds;
* :meth:`~ModelStates.publish` writes closed windows to ``driftline.drift_metrics``, *then* saves
  every model changed since its last save (:meth:`DetectorEngine.changed`) in one insert.

A model's state is a full snapshot (key ``full``) and the records saved after it (keys
``delta:NN``, a ring of :data:`RING` slots), so a save costs a write proportional to what changed,
not to the labels still awaited. A full snapshot is written again when the ring would wrap or the
deltas outweigh it. A record is a state delta (what changed since the last full or state delta),
or, while the model's changes since that record follow from its events alone and are fewer than
:data:`EVENTS_PER_STATE` events, those events (``kind: events``): loading folds the state deltas
into the full snapshot, then observes the events recorded after the last of them again. So a
model with a few events per chunk costs a few events' bytes per save, not a comparison of its
histograms (issue 17: with 1,000 models a chunk brings ~5 events to each).

>>> # states = ModelStates(DetectorEngine(cfg), client, registry=reg)
>>> # states.refresh({"churn"}, set()); states.observed("churn", ("t", 0), (41, 3), event)
>>> # states.publish(engine.poll(now_s), check_owner=True)
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any, Callable, Collection, Sequence

from driftline.detectors import sink
from driftline.detectors.base import MetricRow
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.journal import events_blob, events_of

__all__ = ["ModelStates", "RING", "EVENTS_PER_STATE", "Position", "Source"]

logger = logging.getLogger(__name__)

RING = 64  # delta slots per model
#: defaults of what the collector hands down from its settings (``detector_state_retry_s``,
#: ``detector_park_after_s``), mirrored here: tests/collector/test_config.py keeps them equal
STATE_RETRY_S = 30.0
PARK_AFTER_S = 300.0
#: drift_metrics rows (and estimates) kept while the store refuses them, ~200 bytes each
UNWRITTEN_MAX_ROWS = 200_000
#: a state delta is saved (instead of events) once this many events are recorded since the last
#: one: bounds what a load observes again
EVENTS_PER_STATE = 500
#: An observed event kept for the next save, resident: ~1.1 KB and ~105 B per feature (tracemalloc of
#: decoded events: 3.1 KB at 20 features, 104 KB at 1,000). What :meth:`ModelStates.held_bytes` sums.
HELD_EVENT_BYTES, HELD_FEATURE_BYTES = 1_100, 105


class _Held(list):  # type: ignore[type-arg]
    """A model's events kept for its next save, and their estimated memory."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0


_MS = _dt.timedelta(milliseconds=1)

Source = tuple[str, int]  # (topic, partition)
Position = tuple[int, int]  # (offset, index of the event inside the record)
_NOWHERE: Position = (-1, -1)


class ModelStates:
    """Loads, tracks and saves the per-model state of ``engine`` through ``client``.

    ``client`` is a clickhouse-connect client with :func:`driftline.collector.store.migrate` done;
    ``retry_s`` bounds the retries of a failed read or write (then the error is raised and the
    state stays unsaved: it is saved with the next :meth:`publish`). ``park_after_s``: with the
    engine's memory budget over, models with no event for this long (``clock`` seconds) leave
    memory after a save (:meth:`park`).
    """

    def __init__(self, engine: DetectorEngine, client: Any, *, registry: Any = None,
                 retry_s: float = STATE_RETRY_S,
                 sleep: Callable[[float], None] = time.sleep,
                 park_after_s: float = PARK_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.client = client
        self.retry_s = retry_s
        self.sleep = sleep
        self.park_after_s = park_after_s
        self.clock = clock
        self._active: dict[str, float] = {}  # per loaded model: clock() when it last had events saved
        self._loaded: set[str] = set()  # models whose saved state this process has read
        self._positions: dict[str, dict[Source, Position]] = {}
        self._moved: set[str] = set()  # models whose positions advanced since their last save
        self._seq: dict[str, int] = {}  # last saved (or loaded) record number per model
        self._full_seq: dict[str, int] = {}  # record number of the full snapshot deltas follow
        self._full_bytes: dict[str, int] = {}
        self._delta_bytes: dict[str, int] = {}  # written since the last full snapshot
        self._events: dict[str, _Held] = {}  # observed since the last save, per model
        self._journaled: dict[str, int] = {}  # events saved as events since the last state record
        self._last_saved_at = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
        # clock() of the first publish that failed since the last one that completed: meanwhile
        # observed events may be in memory only (their state unsaved), so their offsets wait
        self.failing_since: float | None = None
        # rows and estimates a failed publish could not write: written first by the next one
        self._unwritten_rows: list[MetricRow] = []
        self._unwritten_estimates: list[Any] = []
        self.metrics = _StateMetrics(registry)

    # -- positions ------------------------------------------------------------------------------
    def loaded(self, model: str) -> bool:
        """True once this process has read ``model``'s saved state (and until it loses it)."""
        return model in self._loaded

    def position(self, model: str, source: Source) -> Position:
        """The last position of ``source`` that ``model``'s state holds, ``(-1, -1)`` if none."""
        return self._positions[model].get(source, _NOWHERE)

    def observed(self, model: str, source: Source, where: Position, event: Any) -> None:
        """``model``'s state now holds ``event``, at ``where`` of ``source`` (unsaved until published;
        the events are kept until then: a save may record them instead of a state delta, which it
        does only for fewer than :data:`EVENTS_PER_STATE`, so no more are kept). Every event the
        engine observes for ``model`` must be told here, in the engine's order."""
        self._positions[model][source] = where
        self._moved.add(model)
        events = self._events.get(model)
        if events is None:
            events = self._events[model] = _Held()
        if len(events) < EVENTS_PER_STATE:  # past it, a state delta is saved: the events are not needed
            events.append(event)
            features = event.get("features") if type(event) is dict else None
            events.bytes += HELD_EVENT_BYTES + HELD_FEATURE_BYTES * (len(features) if type(features) is dict else 0)

    def held_bytes(self) -> int:
        """Estimated memory of the events kept for the next save, all models (see
        :data:`HELD_EVENT_BYTES`); the stage saves early when it passes its share of the budget."""
        return sum(e.bytes for e in self._events.values())

    def unsaved(self) -> set[str]:
        """Models with progress not saved yet (detector state or positions)."""
        return self.engine.changed() | self._moved

    # -- loading --------------------------------------------------------------------------------
    def refresh(self, new: Collection[str], moved: Collection[str], *, retry_s: float | None = None) -> None:
        """Add and load ``new`` models; reload ``moved`` ones (another process may have owned their
        source meanwhile) if their saved state is not the one we hold. Unsaved progress of our own
        is kept. ``retry_s``: the reads' retries, if not :attr:`retry_s` (0: one attempt)."""
        stale = set(moved) - set(new) - self.unsaved()
        if stale:
            latest = self._retry(lambda: sink.latest_seqs(self.client, sorted(stale)), "detector state check",
                                 retry_s)
            stale = {m for m in stale if latest.get(m, -1) != self._seq.get(m, -1)}
            for m in stale:
                self._drop(m)
        if new or stale:
            self._load(set(new) | stale, retry_s)

    def _drop(self, model: str) -> None:
        self.engine.drop_model(model)
        self._moved.discard(model)
        self._events.pop(model, None)

    def _load(self, models: set[str], retry_s: float | None = None) -> None:
        eng = self.engine
        for m in models:
            eng.ensure_model(eng.config.default_for(m))
        try:
            records = self._retry(lambda: sink.load_records(self.client, sorted(models)), "detector state load",
                                  retry_s)
        except Exception:
            self._loaded.difference_update(models)  # read at the next try, as new (a dropped one was loaded)
            raise
        now = self.clock()
        for m in models:
            self._loaded.add(m)
            self._active[m] = now
            self._positions[m] = {}
            for k in (self._seq, self._full_seq, self._full_bytes, self._delta_bytes, self._events,
                      self._journaled):
                k.pop(m, None)
            recs = records.get(m)
            if not recs:
                continue
            by_key = {r.key: r for r in recs}
            full = by_key.get("full")
            if full is None:
                continue
            f = full.meta["seq"]
            chain = {r.meta["seq"]: r for r in recs if r.key != "full" and r.meta.get("base") == f
                     and r.meta["seq"] > f}
            deltas = []
            while f + len(deltas) + 1 in chain:
                deltas.append(chain[f + len(deltas) + 1])
            last = deltas[-1] if deltas else full
            states = [d for d in deltas if d.meta.get("kind") != "events"]
            # A state delta holds every change since the state record before it, the effects of
            # the events recorded in between included: only the events after the last one count.
            after = deltas[deltas.index(states[-1]) + 1:] if states else deltas
            try:
                eng.load_model_state(m, full.blob, [d.blob for d in states])
                replay = [ev for d in after for ev in events_of(d.blob)]
                if replay:
                    eng.replay(m, replay)
            except Exception:  # noqa: BLE001 - a state this build cannot read: start afresh, loudly
                logger.exception("detector state of model %r not loaded; its detectors start afresh", m)
                continue
            self._positions[m] = {(t, int(p)): (o, i) for t, p, o, i in last.meta["positions"]}
            self._seq[m], self._full_seq[m] = last.meta["seq"], f
            self._full_bytes[m] = len(full.blob)
            self._delta_bytes[m] = sum(len(d.blob) for d in deltas)
            self._journaled[m] = len(replay)
            self._last_saved_at = max(self._last_saved_at, *(r.saved_at.replace(tzinfo=_dt.timezone.utc)
                                                             if r.saved_at.tzinfo is None else r.saved_at
                                                             for r in recs))
            if self.metrics.enabled:
                self.metrics.loads.inc()

    # -- saving ---------------------------------------------------------------------------------
    def publish(self, rows: list[MetricRow], *, check_owner: bool) -> None:
        """Write ``rows``, then save every model with unsaved progress.

        ``check_owner``: no event proves we still own these models (a tick, a shutdown): if
        another process saved one since our last save, its source moved; forget it and its rows,
        never overwrite. A crash between the write and the save re-emits the same windows after
        the replay: ``drift_metrics`` is a ReplacingMergeTree ordered by window.

        When the store fails past the retries, the error is raised, and what was not written is
        kept: the rows and estimates (written first by the next publish, the oldest dropped past
        ``UNWRITTEN_MAX_ROWS``) and the models' unsaved progress. :attr:`failing_since` says since
        when, until a publish completes.
        """
        try:
            self._publish(rows, check_owner=check_owner)
        except Exception:
            if self.failing_since is None:
                self.failing_since = self.clock()
            raise
        self.failing_since = None

    def _publish(self, rows: list[MetricRow], *, check_owner: bool) -> None:
        rows = self._unwritten_rows + list(rows) if self._unwritten_rows else rows
        estimates = self._unwritten_estimates
        self._unwritten_rows, self._unwritten_estimates = [], []
        try:
            dirty = sorted(self.unsaved())
            lost: set[str] = set()
            if check_owner and dirty:
                latest = self._retry(lambda: sink.latest_seqs(self.client, dirty), "detector state check")
                lost = {m for m in dirty if latest.get(m, -1) > self._seq.get(m, -1)}
                if lost:
                    logger.info("detector state of %d model(s) now owned by another collector", len(lost))
                    for m in lost:
                        self._drop(m)
                        self._loaded.discard(m)
                        self._active.pop(m, None)
                    rows = [r for r in rows if r.model not in lost]
                    dirty = [m for m in dirty if m not in lost]
            estimates = [r for r in (*estimates, *self.engine.poll_estimates()) if r.model not in lost]
            if rows:
                self._retry(lambda: sink.write_rows(self.client, rows), "drift_metrics write")
                rows = []
            if estimates:
                self._retry(lambda: sink.write_estimates(self.client, estimates), "performance_estimates write")
                estimates = []
        except Exception:
            self._keep_unwritten(rows, estimates)
            raise
        if dirty:
            self.save(dirty)
        self.park()

    def _keep_unwritten(self, rows: list[MetricRow], estimates: list[Any]) -> None:
        """Keep what a failed publish could not write, the newest ``UNWRITTEN_MAX_ROWS`` of each."""
        for kind, kept in (("drift_metrics rows", rows), ("performance estimates", estimates)):
            if len(kept) > UNWRITTEN_MAX_ROWS:
                logger.error("%d %s dropped: the store has refused them for longer than %d more could be kept",
                             len(kept) - UNWRITTEN_MAX_ROWS, kind, UNWRITTEN_MAX_ROWS)
        self._unwritten_rows = list(rows[-UNWRITTEN_MAX_ROWS:])
        self._unwritten_estimates = list(estimates[-UNWRITTEN_MAX_ROWS:])

    def park(self, keep: Collection[str] = ()) -> list[str]:
        """When the engine's memory budget is over (or evicted joins since the last look), unload
        every idle model: saved, no event for ``park_after_s``, nothing awaiting the clock
        (:meth:`DetectorEngine.parkable`), not in ``keep`` (the models of the chunk about to be
        observed). All of them, not just enough for now: joins grow with every chunk, and a model
        idle that long costs one load if it comes back. Their next event loads them again
        (:meth:`refresh` sees them as not loaded), exactly as a restart would. Returns the models
        unloaded."""
        budget = self.engine.budget
        if budget is None:
            return []
        monitors = self.engine.monitors
        over = budget.over(monitors)
        if over <= 0:
            return []
        unsaved = self.unsaved()
        idle_before = self.clock() - self.park_after_s
        parked = [m for m, t in self._active.items()
                  if t <= idle_before and m not in unsaved and m not in keep and self.engine.parkable(m)]
        for m in parked:
            mon = monitors[m]
            over -= mon.state_bytes + budget.entry_bytes * sum(len(s) for s in mon.stores)
            self.engine.park_model(m)
            self._forget(m)
        budget.parked(len(parked), monitors, over)
        return parked

    def _forget(self, model: str) -> None:
        """This process no longer holds ``model``'s state: its next event loads it."""
        self._loaded.discard(model)
        self._active.pop(model, None)
        self._moved.discard(model)
        for k in (self._positions, self._seq, self._full_seq, self._full_bytes, self._delta_bytes, self._events,
                  self._journaled):
            k.pop(model, None)

    def save(self, models: Sequence[str]) -> None:
        """Save the state of ``models`` in one insert (all of them are stored, or none)."""
        start = time.perf_counter()
        eng = self.engine
        now = _dt.datetime.now(_dt.timezone.utc)
        # Strictly increasing, also past what a previous owner wrote: the table keeps the newest.
        saved_at = self._last_saved_at = max(now, self._last_saved_at + _MS)
        records, plans = [], []
        for m in models:
            seq = self._seq.get(m, 0) + 1
            base = self._full_seq.get(m)
            full = (base is None or seq - base >= RING
                    # loading reads at most ~5x a snapshot; a snapshot is written ~1/4 as often
                    or self._delta_bytes.get(m, 0) > max(4 * self._full_bytes.get(m, 0), 256 * 1024))
            events = self._events.get(m, ())
            encoded = self._encode(m, full, events)
            if encoded is None:
                continue  # stays unsaved: tried again at the next save
            kind, blob = encoded
            full = kind == "full"
            meta = {"seq": seq, "base": seq if full else base, "kind": kind,
                    "positions": [[t, p, o, i] for (t, p), (o, i) in self._positions.get(m, {}).items()]}
            key = "full" if full else f"delta:{seq % RING:02d}"
            records.append(sink.StateRecord(m, key, blob, meta, saved_at))
            plans.append((m, seq, kind, len(blob), len(events)))
        if records:
            self._retry(lambda: sink.save_records(self.client, records), "detector state save")
        now = self.clock()
        for m, seq, kind, size, n_events in plans:
            if n_events:
                self._active[m] = now
            if kind == "events":
                eng.mark_journaled(m)
                self._journaled[m] = self._journaled.get(m, 0) + n_events
            else:
                eng.mark_saved(m)
                self._journaled.pop(m, None)
            self._events.pop(m, None)
            self._moved.discard(m)
            self._seq[m] = seq
            if kind == "full":
                self._full_seq[m], self._full_bytes[m], self._delta_bytes[m] = seq, size, 0
            else:
                self._delta_bytes[m] = self._delta_bytes.get(m, 0) + size
        self.metrics.saved(len(records), sum(p[3] for p in plans), time.perf_counter() - start,
                           sum(1 for p in plans if p[2] == "events"))

    def _encode(self, model: str, full: bool, events: Sequence[Any]) -> tuple[str, bytes] | None:
        """``model``'s record to save: ``(kind, blob)``. The events since its last save when they
        are few and replay to the same state, else a state delta, else (``full``) a snapshot.

        One model's state that cannot be encoded (a bug) must not keep every other model's
        state unsaved, as it would if it failed their shared insert: a delta that fails is
        replaced by a full snapshot; a snapshot that fails leaves the model out of this save
        (it stays unsaved and is tried again at the next one). Both are logged and counted
        (``driftline_detector_state_encode_errors_total``)."""
        eng = self.engine
        if not full:
            try:
                if self._journaled.get(model, 0) + len(events) < EVENTS_PER_STATE and eng.replayable(model):
                    return "events", events_blob(model, events)
                return "delta", eng.state_for(model, delta=True)
            except Exception:  # noqa: BLE001 - a bug: save the whole state instead
                self.metrics.encode_error("delta")
                logger.exception("detector state delta of model %r could not be encoded; saving a full "
                                 "snapshot instead", model)
        try:
            return "full", eng.state_for(model)
        except Exception:  # noqa: BLE001 - a bug: the other models are saved, this one is not
            self.metrics.encode_error("full")
            logger.exception("detector state of model %r could not be encoded; it stays unsaved and is "
                             "tried again at the next save", model)
            return None

    def _retry(self, fn: Callable[[], Any], what: str, retry_s: float | None = None) -> Any:
        deadline = time.monotonic() + (self.retry_s if retry_s is None else retry_s)
        delay = 0.1
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - the store is briefly away: back off
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
                self.sleep(delay)
                delay = min(5.0, delay * 2)


class _StateMetrics:
    """Prometheus metrics of state saves and loads (no-ops without a registry)."""

    def __init__(self, registry: Any) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        from prometheus_client import Counter, Histogram

        self.saves = Counter("driftline_detector_state_records_total", "Per-model state records saved",
                             registry=registry)
        self.bytes = Counter("driftline_detector_state_bytes_total", "Compressed state bytes saved",
                             registry=registry)
        self.seconds = Histogram("driftline_detector_state_save_seconds", "Time to build and save state",
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=registry)
        self.event_records = Counter("driftline_detector_state_event_records_total",
                                     "Per-model records saved as the model's events (few events, no window closed)",
                                     registry=registry)
        self.loads = Counter("driftline_detector_state_loads_total", "Models whose saved state was loaded",
                             registry=registry)
        self.encode_errors = Counter("driftline_detector_state_encode_errors_total",
                                     "Per-model states that could not be encoded for a save (a bug: see the log); "
                                     "kind=delta is saved as a full snapshot instead, kind=full stays unsaved",
                                     ["kind"], registry=registry)

    def encode_error(self, kind: str) -> None:
        if self.enabled:
            self.encode_errors.labels(kind).inc()

    def saved(self, records: int, size: int, seconds: float, event_records: int) -> None:
        if self.enabled:
            self.saves.inc(records)
            self.bytes.inc(size)
            self.seconds.observe(seconds)
            self.event_records.inc(event_records)
