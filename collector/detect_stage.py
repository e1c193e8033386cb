"""The detector stage of the collector: stored events in, drift rows and durable state out.

:class:`DetectorStage` is the pipeline's observer (``collector/pipeline.py``). It runs on the
single storage thread, after each chunk is stored and before the Kafka batch is acknowledged:

1. A model seen for the first time by this process is added to the engine (its own settings,
   the ``model: "*"`` document's, or the defaults with a first-events reference) and its saved
   state is loaded, whichever collector saved it.
2. Each event is observed exactly once over crashes and rebalances (see :meth:`observe`).
3. Closed windows go to ``driftline.drift_metrics``, *then* the state of every model the chunk
   touched is saved in one insert, with the Kafka position of the last event observed per
   partition. A crash between the two re-emits the same windows after the replay:
   ``drift_metrics`` is a ReplacingMergeTree ordered by window, so ``FINAL`` holds one row each.

State is saved as per-model records in ``driftline.detector_state``: a full snapshot (key
``full``) and deltas after it (keys ``delta:NN``, a ring of :data:`RING` slots), so a chunk
costs a write proportional to what it changed, not to the labels still awaited. A full snapshot
is written again when the ring would wrap or the deltas outweigh it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any, Callable, Sequence

from driftline.detectors import sink
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine

logger = logging.getLogger("driftline.collector")

RING = 64  # delta slots per model
_MS = _dt.timedelta(milliseconds=1)
_NEVER = float("-inf")

TP = tuple[str, int]


class DetectorStage:
    """Feeds stored events to a :class:`DetectorEngine`; writes its rows and per-model state.

    ``client`` is a clickhouse-connect client with :func:`driftline.collector.store.migrate` done;
    ``clock`` returns epoch seconds (time windows close on :meth:`tick`); ``retry_s`` bounds the
    retries of a failed write before the chunk's error is logged by the pipeline (the state
    stays dirty and is saved with the next chunk).

    >>> # stage = DetectorStage(DetectorEngine(cfg, registry=reg), client, cfg, registry=reg)
    >>> # pipeline = Pipeline(writer, metrics, ..., observers=[stage])
    """

    def __init__(self, engine: DetectorEngine, client: Any, config: DetectorsConfig, *,
                 clock: Callable[[], float] = time.time, registry: Any = None, retry_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.client = client
        self.config = config
        self.clock = clock
        self.retry_s = retry_s
        self.sleep = sleep
        self.loaded: set[str] = set()  # models whose saved state this process has read
        self.positions: dict[str, dict[TP, tuple[int, int]]] = {}  # model -> tp -> (offset, index)
        self.seq: dict[str, int] = {}  # last saved (or loaded) record number per model
        self.full_seq: dict[str, int] = {}  # record number of the full snapshot deltas follow
        self.full_bytes: dict[str, int] = {}
        self.delta_bytes: dict[str, int] = {}  # written since the last full snapshot
        self.tp_last: dict[TP, int] = {}  # last offset seen per partition (any model)
        self.tp_models: dict[TP, set[str]] = {}
        self.catching_up: set[TP] = set()
        self.last_saved_at = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
        self.metrics = _StageMetrics(registry)

    # -- events ---------------------------------------------------------------------------------
    def observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Any],
                replayed: frozenset[str]) -> None:
        """Observe a stored chunk exactly once, write closed windows, then save touched state.

        An event is observed if the writer stored it just now (not in ``replayed``: nobody has
        observed it). A replayed event is observed only while its partition is catching up
        (after this process started or took the partition over, until the first event the
        writer had not stored) and only past the position saved for its model: the previous
        owner stored it and died before saving its state. Any other replay, and a second copy
        inside the chunk, was observed already.
        """
        self._prepare(events, positions)
        eng = self.engine
        seen: set[str] = set()
        todo: list[dict[str, Any]] = []
        skipped = 0
        catching_up = self.catching_up
        all_positions = self.positions
        for ev, pos in zip(events, positions):
            eid = ev["event_id"]
            if eid in seen:
                skipped += 1
                continue
            seen.add(eid)
            tp = (pos.topic, pos.partition)
            model = ev["model"]
            where = (pos.offset, pos.index)
            mine = all_positions[model]
            if eid in replayed:
                if tp not in catching_up or where <= mine.get(tp, (-1, -1)):
                    skipped += 1
                    continue
            elif catching_up:
                catching_up.discard(tp)
            todo.append(ev)
            mine[tp] = where
            eng.dirty.add(model)
        eng.observe_many(todo)
        if skipped:
            self.metrics.skipped(skipped)
        # Count windows closed while observing; time windows close on tick only.
        self._publish(eng.poll(_NEVER), check_owner=False)

    def _prepare(self, events: Sequence[dict[str, Any]], positions: Sequence[Any]) -> None:
        """Add and load new models; reload models of a partition that jumped ahead (another
        collector owned it meanwhile and may have saved newer state)."""
        new: set[str] = set()
        stale: set[str] = set()
        for ev, pos in zip(events, positions):
            tp = (pos.topic, pos.partition)
            model = ev["model"]
            last = self.tp_last.get(tp)
            if last is None:
                self.catching_up.add(tp)
            elif pos.offset > last + 1:
                self.catching_up.add(tp)
                stale |= self.tp_models.get(tp, set())
            if last is None or pos.offset > last:
                self.tp_last[tp] = pos.offset
            self.tp_models.setdefault(tp, set()).add(model)
            if model not in self.loaded:
                new.add(model)
        stale -= new
        stale -= self.engine.dirty  # unsaved progress of our own: keep it
        if stale:
            latest = self._retry(lambda: sink.latest_seqs(self.client, sorted(stale)), "detector state check")
            stale = {m for m in stale if latest.get(m, -1) != self.seq.get(m, -1)}
            for m in stale:
                self.engine.drop_model(m)
        if new or stale:
            self._load(new | stale)

    def _load(self, models: set[str]) -> None:
        eng = self.engine
        for m in models:
            eng.ensure_model(self.config.default_for(m))
        records = self._retry(lambda: sink.load_records(self.client, sorted(models)), "detector state load")
        for m in models:
            self.loaded.add(m)
            self.positions[m] = {}
            for k in (self.seq, self.full_seq, self.full_bytes, self.delta_bytes):
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
            try:
                eng.load_model_state(m, full.blob, [d.blob for d in deltas])
            except Exception:  # noqa: BLE001 - a state this build cannot read: start afresh, loudly
                logger.exception("detector state of model %r not loaded; its detectors start afresh", m)
                continue
            self.positions[m] = {(t, int(p)): (o, i) for t, p, o, i in last.meta["positions"]}
            self.seq[m], self.full_seq[m] = last.meta["seq"], f
            self.full_bytes[m] = len(full.blob)
            self.delta_bytes[m] = sum(len(d.blob) for d in deltas)
            self.last_saved_at = max(self.last_saved_at, *(r.saved_at.replace(tzinfo=_dt.timezone.utc)
                                                           if r.saved_at.tzinfo is None else r.saved_at
                                                           for r in recs))
            if self.metrics.enabled:
                self.metrics.loads.inc()

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        """Close time windows whose end (plus grace) has passed; write them; save their state."""
        self._publish(self.engine.poll(now_s), check_owner=True)

    def close(self) -> None:
        """At shutdown: save what is not saved yet. Open windows stay open (and in the state)."""
        self._publish(self.engine.poll(_NEVER), check_owner=True)

    # -- output ---------------------------------------------------------------------------------
    def _publish(self, rows: list[Any], *, check_owner: bool) -> None:
        eng = self.engine
        dirty = sorted(eng.dirty)
        if check_owner and dirty:
            # On a tick no event proves we still own these models: if another collector saved
            # them since our last save, the partition moved. Forget them; never overwrite.
            latest = self._retry(lambda: sink.latest_seqs(self.client, dirty), "detector state check")
            lost = {m for m in dirty if latest.get(m, -1) > self.seq.get(m, -1)}
            if lost:
                logger.info("detector state of %d model(s) now owned by another collector", len(lost))
                for m in lost:
                    eng.drop_model(m)
                    self.loaded.discard(m)
                rows = [r for r in rows if r.model not in lost]
                dirty = [m for m in dirty if m not in lost]
        if rows:
            self._retry(lambda: sink.write_rows(self.client, rows), "drift_metrics write")
        if dirty:
            self._save(dirty)

    def _save(self, models: list[str]) -> None:
        start = time.perf_counter()
        eng = self.engine
        now = _dt.datetime.now(_dt.timezone.utc)
        # Strictly increasing, also past what a previous owner wrote: the table keeps the newest.
        saved_at = self.last_saved_at = max(now, self.last_saved_at + _MS)
        records, plans = [], []
        for m in models:
            seq = self.seq.get(m, 0) + 1
            base = self.full_seq.get(m)
            full = (base is None or seq - base >= RING
                    # loading reads at most ~5x a snapshot; a snapshot is written ~1/4 as often
                    or self.delta_bytes.get(m, 0) > max(4 * self.full_bytes.get(m, 0), 256 * 1024))
            blob = eng.state_for(m, delta=not full)
            meta = {"seq": seq, "base": seq if full else base, "kind": "full" if full else "delta",
                    "positions": [[t, p, o, i] for (t, p), (o, i) in self.positions.get(m, {}).items()]}
            key = "full" if full else f"delta:{seq % RING:02d}"
            records.append(sink.StateRecord(m, key, blob, meta, saved_at))
            plans.append((m, seq, full, len(blob)))
        self._retry(lambda: sink.save_records(self.client, records), "detector state save")
        for m, seq, full, size in plans:
            eng.checkpoint(m)
            eng.dirty.discard(m)
            self.seq[m] = seq
            if full:
                self.full_seq[m], self.full_bytes[m], self.delta_bytes[m] = seq, size, 0
            else:
                self.delta_bytes[m] = self.delta_bytes.get(m, 0) + size
        self.metrics.saved(len(records), sum(p[3] for p in plans), time.perf_counter() - start)

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.retry_s
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


class _StageMetrics:
    """Prometheus metrics of the stage (no-ops without a registry)."""

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
        self.loads = Counter("driftline_detector_state_loads_total", "Models whose saved state was loaded",
                             registry=registry)
        self.replays = Counter("driftline_detector_replays_skipped_total",
                               "Stored events not observed again (seen before a crash or a rebalance)",
                               registry=registry)

    def skipped(self, n: int) -> None:
        if self.enabled:
            self.replays.inc(n)

    def saved(self, records: int, size: int, seconds: float) -> None:
        if self.enabled:
            self.saves.inc(records)
            self.bytes.inc(size)
            self.seconds.observe(seconds)


def build_stage(config: DetectorsConfig, client: Any, *, registry: Any = None,
                clock: Callable[[], float] = time.time) -> DetectorStage:
    """Load stored references and return the stage. The store is already migrated: the process's
    entry point (:func:`driftline.collector.app.run_collector`) runs the one migrate at start."""
    from driftline.detectors.reference import ReferenceStore

    engine = DetectorEngine(config, clock=clock, registry=registry)
    for ref in ReferenceStore(client).load_all():
        engine.set_reference(ref)
    engine.dirty.clear()
    return DetectorStage(engine, client, config, clock=clock, registry=registry)
