"""The detector stage of the collector: stored events in, drift rows and durable state out.

:class:`DetectorStage` adapts the pipeline's :class:`~driftline.collector.pipeline.Observer`
protocol to the detectors' durable state, :class:`~driftline.detectors.state.ModelStates`. The
protocol is matched by shape, not imported: the collector and the detectors do not import each
other, and ``driftline collector`` (``cli/collector.py``) plugs the stage in through
:func:`build_observers`. It runs on the single storage thread, after each chunk is stored and
before the Kafka batch is acknowledged:

1. A model seen for the first time by this process is added and its saved state loaded,
   whichever collector saved it; so are the models of a partition that jumped ahead (another
   collector owned it meanwhile) when their saved state is newer than ours.
2. Each event is observed exactly once over crashes and rebalances (see :meth:`observe`).
3. Closed windows go to ``driftline.drift_metrics``, *then* the state of every model changed
   since its last save is saved in one insert, with the Kafka position of the last event observed
   per partition (:meth:`ModelStates.publish`): at most every ``save_interval_s`` while chunks keep
   coming, and whenever the consumer is about to commit after one (idle, stopping, rebalancing:
   :meth:`DetectorStage.flush`). Until then :meth:`DetectorStage.may_acknowledge` is False, so
   the Kafka offsets of events whose state is unsaved are not committed and a crash reads them
   again, as it would between a chunk and its save.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from driftline.detectors.config import DetectorsConfig, load_config
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.state import PARK_AFTER_S, STATE_RETRY_S, ModelStates, Source

_NEVER = float("-inf")
log = logging.getLogger(__name__)
#: feature values (plus one per event) the stage holds while models' state cannot be loaded: ~100 bytes each
HELD_MAX_VALUES = 2_000_000
#: seconds a hold keeps the consumer from committing. The collector hands down its setting
#: (``detector_held_ack_after_s``, whose default this mirrors: tests/collector/test_config.py)
HELD_ACK_AFTER_S = 120.0
REFERENCE_POLL_S = 10.0  # ``reference_poll_s``, mirrored the same way
#: seconds between the saves of a busy stage (``detector_save_interval_s``, mirrored the same way).
#: A save compares every histogram a chunk touched: at 1,000 features ~9 % of the collector's CPU
#: when made after every chunk (bench/fleet.md)
SAVE_INTERVAL_S = 5.0
#: the share of the memory budget (``detector_memory_budget_mb``) the events kept for a deferred save
#: may take (:meth:`ModelStates.held_bytes`): past it the stage saves before its interval. A model
#: keeps at most 500 events for a save, but 100 busy 20-feature models kept ~155 MB for 5 s.
HELD_SAVE_BUDGET_SHARE = 0.125
HELD_SAVE_MAX_BYTES = 64 * 2**20  # the same without a budget


class DetectorStage:
    """Feeds stored events to the engine of ``states`` exactly once; publishes its rows and state.

    >>> # stage = DetectorStage(ModelStates(DetectorEngine(cfg, registry=reg), client, registry=reg))
    >>> # pipeline = Pipeline(writer, metrics, ..., observers=[stage])
    """

    def __init__(self, states: ModelStates, *, registry: Any = None,
                 references: "ReferenceWatch | None" = None, held_max_values: int = HELD_MAX_VALUES,
                 held_ack_after_s: float = HELD_ACK_AFTER_S, save_interval_s: float = SAVE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.states = states
        self.references = references
        self.engine = states.engine
        self.tp_last: dict[Source, int] = {}  # last offset seen per partition (any model)
        self.tp_models: dict[Source, set[str]] = {}
        self.catching_up: set[Source] = set()
        self.metrics = _StageMetrics(registry)
        self.metrics.watch_output(self._unwritten_s)
        # Stored chunks not observed yet, oldest first: their models' saved state could not be read.
        # [events, positions, replayed, feature values (0 until weighed by _bound)]
        self.held: deque[list[Any]] = deque()
        self.held_events = 0
        self.held_values = 0  # feature values of the held events weighed so far (what they weigh in memory)
        self.held_max_values = held_max_values
        self.held_ack_after_s = held_ack_after_s
        self._held_since = _NEVER  # clock() when the current hold began
        # the current hold's offsets may be committed (some were given up, or the hold is too old): the
        # rest are at risk, and given up and counted if still held at a stop or a rebalance; reset
        # when a hold begins
        self._acked = False
        self._failing_acked: float | None = None  # the failing_since whose bound has passed (logged once)
        self.clock = clock
        self._retry_at = _NEVER
        self._retry_delay = 0.0
        self.save_interval_s = save_interval_s
        budget = getattr(self.engine, "budget", None)
        self.held_save_max_bytes = (HELD_SAVE_MAX_BYTES if budget is None
                                    else int(budget.limit_bytes * HELD_SAVE_BUDGET_SHARE))
        self._published_at = _NEVER  # clock() of the last publish
        self._rows: list[Any] = []  # drift rows closed since the last publish
        self._unpublished = False  # rows or state changed since the last publish (deferred)

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

        A chunk whose models' saved state cannot be read (the store away for longer than the
        state's retries) is held, not skipped, and so is every chunk after it, in order: they
        are observed once the state loads (tried again at later chunks and ticks, backing off
        from 1 to 30 s). Held events past ``held_max_values`` feature values are given up,
        oldest first; both are counted (``driftline_detector_events_unobserved_total``) and
        logged. While chunks are held, none was given up and the hold is younger than
        ``held_ack_after_s``, :meth:`may_acknowledge` is False: the consumer commits no offset,
        so a crash or a stop reads them again and the next process observes them. After that,
        the rest are acknowledged with the batches after them (neither the broker nor ``up``'s
        stop may wait on the state store) and are still observed once the state loads; those
        still held at a stop or a rebalance are then given up and counted.
        """
        if not self.held:
            self._held_since, self._acked = self.clock(), False
        self.held.append([events, positions, replayed, 0])
        self.held_events += len(events)
        if not self._release():
            self._bound()

    def _bound(self) -> None:
        """Weigh the chunks held since the last look (only while holding: not on the hot path) and
        give up the oldest past ``held_max_values``, keeping the newest chunk."""
        for entry in self.held:
            if not entry[3]:
                entry[3] = sum(len(ev.get("features") or ()) + 1 for ev in entry[0])
                self.held_values += entry[3]
        while len(self.held) > 1 and self.held_values > self.held_max_values:
            old = self._pop()
            self._acked = True
            self.metrics.unobserved(len(old))
            log.error("%d stored events given up by the detectors: their models' state could not be loaded "
                      "and the events held meanwhile passed %d feature values", len(old), self.held_max_values)
        self.metrics.held(self.held_events)

    def _pop(self) -> Sequence[dict[str, Any]]:
        """Take the oldest held chunk out; its events."""
        events, _, _, values = self.held.popleft()
        self.held_events -= len(events)
        self.held_values -= values
        return events

    def _release(self, *, force: bool = False) -> bool:
        """Observe the held chunks, oldest first, while their models' state loads; True if none is
        left. Between failed attempts it waits (1 s doubling to 30 s) unless ``force``."""
        if not self.held or (not force and self.clock() < self._retry_at):
            return not self.held
        while self.held:
            events, positions, replayed, _ = self.held[0]
            try:
                # Tried again after a failure: one attempt, the back-off is the retry (the state's own
                # 30 s of retries each time would keep the storage thread from storing meanwhile).
                chunk_models = self._prepare(events, positions, retry_s=0.0 if self._retry_delay else None)
                # idle models out before this chunk's joins are budgeted
                self.states.park(keep=chunk_models)
            except Exception as exc:  # noqa: BLE001 - the state store: try again later, lose nothing
                self._retry_delay = min(30.0, max(1.0, 2 * self._retry_delay))
                self._retry_at = self.clock() + self._retry_delay
                log.warning("detector state could not be loaded (%s); %d stored events held for the detectors, "
                            "tried again in %.0fs", type(exc).__name__, self.held_events, self._retry_delay,
                            exc_info=self._retry_delay <= 1.0)
                return False
            self._retry_delay = 0.0
            try:
                self._observe(events, positions, replayed)
            finally:  # taken out after it is observed: until then the consumer commits nothing
                self._pop()
                self.metrics.held(self.held_events)
        return True

    def may_acknowledge(self) -> bool:
        """False while stored chunks are held, none was given up and the hold is younger than
        ``held_ack_after_s``: their Kafka offsets, and any after them, must not be committed yet (a
        crash would lose them for the detectors). Likewise while the detectors' output (drift rows,
        state) of events already observed could not be written, for at most ``held_ack_after_s``
        from the first failure: a crash then reads them again and the next process observes them
        past each model's saved position."""
        if self.held and not self._acked and self.clock() - self._held_since > self.held_ack_after_s:
            self._acked = True
            log.warning("%d stored events held for the detectors for over %.0fs: their Kafka offsets are committed "
                        "now; they are still observed once their state loads, unless the collector stops first",
                        self.held_events, self.held_ack_after_s)
        failing = self.states.failing_since
        if failing is not None:
            if self.states.clock() - failing <= self.held_ack_after_s:
                return False  # observed events whose state is not saved yet: a crash must read them again
            if self._failing_acked != failing:
                self._failing_acked = failing
                log.warning("the detectors' output could not be written for over %.0fs: Kafka offsets are committed "
                            "now; what is kept in memory is written once the store takes it, unless the collector "
                            "stops or crashes first", self.held_ack_after_s)
        return (not self.held or self._acked) and not self._unpublished

    def flush(self) -> None:
        """Publish what was deferred (the consumer is about to commit: idle, stopping, rebalancing)."""
        if self._unpublished:
            self._publish([], check_owner=False, force=True)

    def _unwritten_s(self) -> float:
        """Seconds since the detectors' output (drift rows, state) could last be written; 0 while it is."""
        failing = self.states.failing_since
        return 0.0 if failing is None else max(0.0, self.states.clock() - failing)

    def _publish(self, rows: list[Any], *, check_owner: bool, force: bool = False) -> None:
        """``states.publish`` of ``rows`` and those deferred, unless the last publish is younger than
        ``save_interval_s`` (and not ``force``, and the events kept for it within
        :data:`HELD_SAVE_BUDGET_SHARE` of the memory budget): then deferred, and :meth:`may_acknowledge`
        is False until it is made. A store failure (past the state's retries) is logged, not raised: what
        was not written is kept and written by the next publish (:meth:`ModelStates.publish`), and
        :meth:`may_acknowledge` holds commits back meanwhile."""
        if rows:
            self._rows.extend(rows)
        now = self.clock()
        if (not force and now - self._published_at < self.save_interval_s
                and self.states.held_bytes() < self.held_save_max_bytes):
            self._unpublished = bool(self._rows) or bool(self.states.unsaved())
            return
        rows, self._rows = self._rows, []
        self._published_at, self._unpublished = now, False
        first = self.states.failing_since is None
        try:
            self.states.publish(rows, check_owner=check_owner)
        except Exception as exc:  # noqa: BLE001 - the store: kept, written later, lose nothing
            log.warning("the detectors' output could not be written (%s: %s): drift rows and state are kept in "
                        "memory and written with the next save; Kafka offsets are not committed meanwhile (for "
                        "at most %.0fs)", type(exc).__name__, exc, self.held_ack_after_s, exc_info=first)
            return
        if not first:
            log.info("the detectors' output was written again")

    def handover(self) -> None:
        """The consumer's partitions were revoked: let the held chunks go. Unless their offsets were
        committed (some given up, or the hold too old: then they are counted given up), they were
        not acknowledged and whoever owns the partitions next reads them again; their partitions are
        forgotten, so that this process, if it gets them back, observes the replays past each
        model's saved position."""
        for entry in self.held:
            for pos in entry[1]:
                tp = (pos.topic, pos.partition)
                self.tp_last.pop(tp, None)
                self.catching_up.discard(tp)
        self._retry_at, self._retry_delay = _NEVER, 0.0  # what comes next is a new hold, if any
        self._let_go("at a rebalance", "left to the partitions' next owner (a rebalance; not acknowledged, so "
                     "they are read again)")

    def _let_go(self, when: str, unacknowledged: str) -> None:
        """Drop every held chunk: given up and counted if its offsets may have been committed
        (:meth:`may_acknowledge`), else said to be read again (``unacknowledged``, how)."""
        if not self.held:
            return
        n = self.held_events
        while self.held:
            self._pop()
        self.metrics.held(0)
        if self._acked:
            self.metrics.unobserved(n)
            log.error("%d stored events given up by the detectors %s: their models' state could not be loaded",
                      n, when)
        else:
            log.warning("%d stored events held for the detectors (their models' state could not be loaded) %s",
                        n, unacknowledged)

    def _observe(self, events: Sequence[dict[str, Any]], positions: Sequence[Any],
                 replayed: frozenset[str]) -> None:
        states = self.states
        seen: set[str] = set()
        todo: list[dict[str, Any]] = []
        skipped = 0
        catching_up = self.catching_up
        for ev, pos in zip(events, positions):
            eid = ev["event_id"]
            if eid in seen:
                skipped += 1
                continue
            seen.add(eid)
            tp = (pos.topic, pos.partition)
            model = ev["model"]
            where = (pos.offset, pos.index)
            if eid in replayed:
                if tp not in catching_up or where <= states.position(model, tp):
                    skipped += 1
                    continue
            elif catching_up:
                catching_up.discard(tp)
            todo.append(ev)
            states.observed(model, tp, where, ev)
        self.engine.observe_many(todo)
        if skipped:
            self.metrics.skipped(skipped)
        # Count windows closed while observing; time windows close on tick only.
        self._publish(self.engine.poll(_NEVER), check_owner=False)

    def _prepare(self, events: Sequence[dict[str, Any]], positions: Sequence[Any], *,
                 retry_s: float | None = None) -> set[str]:
        """Note partitions that are new or jumped ahead; have their models (re)loaded (``retry_s``:
        the state reads' retries, if not the state's own); return the chunk's models."""
        new: set[str] = set()
        models: set[str] = set()
        moved: set[str] = set()
        for ev, pos in zip(events, positions):
            tp = (pos.topic, pos.partition)
            model = ev["model"]
            last = self.tp_last.get(tp)
            if last is None:
                self.catching_up.add(tp)
            elif pos.offset > last + 1:
                self.catching_up.add(tp)
                moved |= self.tp_models.get(tp, set())
            if last is None or pos.offset > last:
                self.tp_last[tp] = pos.offset
            self.tp_models.setdefault(tp, set()).add(model)
            models.add(model)
            if not self.states.loaded(model):
                new.add(model)
        self.states.refresh(new, moved, retry_s=retry_s)
        return models

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        """Pick up references stored meanwhile; close time windows whose end (plus grace) has
        passed; write them; save their state."""
        if self.references is not None:
            self.references.poll(now_s)
        if not self._release():
            return  # a time window must not close without the held events that fall in it
        self._publish(self.engine.poll(now_s), check_owner=True)

    def close(self) -> None:
        """At shutdown: observe what is held if its state loads now (else leave it to be read again at
        the next start; counted given up if their offsets were committed, see :meth:`may_acknowledge`), and
        save what is not saved yet. Open windows stay open (and in the state)."""
        if not self._release(force=True):
            self._let_go("at shutdown", "at shutdown, not acknowledged: they are read again at the next start")
        self._publish(self.engine.poll(_NEVER), check_owner=True, force=True)


class _StageMetrics:
    """Prometheus metrics of the stage (no-ops without a registry)."""

    def __init__(self, registry: Any) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        from prometheus_client import Counter, Gauge

        self.replays = Counter("driftline_detector_replays_skipped_total",
                               "Stored events not observed again (seen before a crash or a rebalance)",
                               registry=registry)
        self.held_events = Gauge("driftline_detector_events_held",
                                 "Stored events waiting for their models' saved state to load before the "
                                 "detectors observe them", registry=registry)
        self.unwritten = Gauge("driftline_detector_output_unwritten_seconds",
                               "How long the store has refused the detectors' output (drift rows, state), kept "
                               "in memory meanwhile; 0 while it is written", registry=registry)
        self.given_up = Counter("driftline_detector_events_unobserved_total",
                                "Stored events the detectors gave up: held past the limit while their models' "
                                "state could not be loaded, then any still held at a stop or a rebalance "
                                "(acknowledged by then)",
                                registry=registry)

    def watch_output(self, seconds: Callable[[], float]) -> None:
        """``driftline_detector_output_unwritten_seconds``, read from ``seconds`` at each scrape."""
        if self.enabled:
            self.unwritten.set_function(seconds)

    def skipped(self, n: int) -> None:
        if self.enabled:
            self.replays.inc(n)

    def held(self, n: int) -> None:
        if self.enabled:
            self.held_events.set(n)

    def unobserved(self, n: int) -> None:
        if self.enabled:
            self.given_up.inc(n)


class ReferenceWatch:
    """The stored references, loaded at start and polled while the collector runs.

    ``driftline reference set`` (or ``delete``) writes to the store, not to the collector: every
    ``interval_s`` the watch reads when each reference was saved (:meth:`ReferenceStore.index`,
    no profiles) and installs the ones saved since it last looked, so a new or replaced reference
    takes effect from its version's next window without a restart (as at a restart, installing
    one restarts that version's windows). A deleted reference stays in use by the running
    collector until it restarts (its drift would otherwise stop without a word); it is logged.
    A failed poll is logged and retried at the next interval: the events are stored regardless.
    """

    def __init__(self, store: Any, engine: DetectorEngine, *, interval_s: float) -> None:
        self.store = store
        self.engine = engine
        self.interval_s = interval_s
        self.saved: dict[tuple[str, str], Any] = {}  # (model, version) -> saved at, as last seen
        self._next = float("-inf")

    def load(self) -> None:
        """At start: every stored reference into the engine."""
        self.saved = self.store.index()
        for ref in self.store.load_all():
            self.engine.set_reference(ref)

    def poll(self, now_s: float) -> None:
        if now_s < self._next:
            return
        self._next = now_s + self.interval_s
        try:
            index = self.store.index()
        except Exception:  # noqa: BLE001 - a store hiccup must not stop the detectors
            log.warning("could not read the stored references; retrying in %gs", self.interval_s, exc_info=True)
            return
        for key in self.saved.keys() - index.keys():
            log.info("reference of model %s version %s was deleted; the running collector keeps using it "
                     "until it restarts", *key)
        for key, saved in index.items():
            if self.saved.get(key) == saved:
                continue
            try:
                ref = self.store.load(*key)
            except Exception:  # noqa: BLE001
                log.warning("could not load the reference of model %s version %s; retrying", *key, exc_info=True)
                index[key] = self.saved.get(key)  # not seen yet: the next poll tries again
                continue
            if ref is not None:
                mon = self.engine.monitors.get(key[0])
                # said at WARNING when it answers the "no usable reference" warning (the log's level)
                level = logging.WARNING if mon is not None and key[1] in mon.missing_warned else logging.INFO
                self.engine.set_reference(ref)
                log.log(level, "reference of model %s version %s (%s, %d rows) installed; its windows restart",
                        *key, ref.source, ref.n_rows)
        self.saved = index


def build_stage(config: DetectorsConfig, client: Any, *, registry: Any = None,
                feature_detail_top: int | None = None, memory_budget_mb: float | None = None,
                park_after_s: float = PARK_AFTER_S,
                reference_poll_s: float = REFERENCE_POLL_S,
                held_ack_after_s: float = HELD_ACK_AFTER_S,
                state_retry_s: float = STATE_RETRY_S,
                save_interval_s: float = SAVE_INTERVAL_S) -> DetectorStage:
    """Load stored references and return the stage. The store is already migrated: the process's
    entry point (:func:`driftline.collector.app.run_collector`) runs the one migrate at start.
    ``feature_detail_top``: see :class:`~driftline.detectors.metrics.EngineMetrics`;
    ``memory_budget_mb``: the detectors' state and pending joins of all models together
    (``detector_memory_budget_mb``); ``park_after_s``: idle time before a model may be unloaded
    under it (``detector_park_after_s``); ``reference_poll_s``: how often references stored
    meanwhile are picked up (:class:`ReferenceWatch`); ``held_ack_after_s``: how long a hold keeps
    the consumer from committing (``detector_held_ack_after_s``, see :meth:`DetectorStage.observe`);
    ``state_retry_s``: how long the saved state's reads and writes are retried (``detector_state_retry_s``);
    ``save_interval_s``: seconds between saves while chunks keep coming (``detector_save_interval_s``)."""
    from driftline.detectors.reference_store import ReferenceStore

    engine = DetectorEngine(config, registry=registry, feature_detail_top=feature_detail_top,
                            memory_budget_mb=memory_budget_mb)
    watch = ReferenceWatch(ReferenceStore(client), engine, interval_s=reference_poll_s)
    watch.load()
    states = ModelStates(engine, client, registry=registry, park_after_s=park_after_s, retry_s=state_retry_s)
    return DetectorStage(states, registry=registry, references=watch, held_ack_after_s=held_ack_after_s,
                         save_interval_s=save_interval_s)


def build_observers(detectors_config: Path | None, client: Any, *, registry: Any = None,
                    feature_detail_top: int | None = None, memory_budget_mb: float | None = None,
                    park_after_s: float = PARK_AFTER_S,
                    reference_poll_s: float = REFERENCE_POLL_S,
                    held_ack_after_s: float = HELD_ACK_AFTER_S,
                    state_retry_s: float = STATE_RETRY_S,
                    save_interval_s: float = SAVE_INTERVAL_S) -> list[DetectorStage]:
    """The collector's observers: the detector stage, always on.

    ``detectors_config`` names a YAML file (one document per model, ``---`` between them,
    ``model: "*"`` for the settings of every other model) or a directory of them; it is
    validated here, at start-up. Models it does not name are monitored with the defaults from
    their first event on (see ``DetectorsConfig.default_for``).
    """
    config = load_config(detectors_config) if detectors_config is not None else DetectorsConfig()
    return [build_stage(config, client, registry=registry, feature_detail_top=feature_detail_top,
                        memory_budget_mb=memory_budget_mb, park_after_s=park_after_s,
                        reference_poll_s=reference_poll_s, held_ack_after_s=held_ack_after_s,
                        state_retry_s=state_retry_s, save_interval_s=save_interval_s)]
