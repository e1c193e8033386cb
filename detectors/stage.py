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
3. Closed windows go to ``driftline.drift_metrics``, *then* the state of every model the chunk
   touched is saved in one insert, with the Kafka position of the last event observed per
   partition (:meth:`ModelStates.publish`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from driftline.detectors.config import DetectorsConfig, load_config
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.state import ModelStates, Source

_NEVER = float("-inf")
log = logging.getLogger(__name__)


class DetectorStage:
    """Feeds stored events to the engine of ``states`` exactly once; publishes its rows and state.

    >>> # stage = DetectorStage(ModelStates(DetectorEngine(cfg, registry=reg), client, registry=reg))
    >>> # pipeline = Pipeline(writer, metrics, ..., observers=[stage])
    """

    def __init__(self, states: ModelStates, *, registry: Any = None,
                 references: "ReferenceWatch | None" = None) -> None:
        self.states = states
        self.references = references
        self.engine = states.engine
        self.tp_last: dict[Source, int] = {}  # last offset seen per partition (any model)
        self.tp_models: dict[Source, set[str]] = {}
        self.catching_up: set[Source] = set()
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
        chunk_models = self._prepare(events, positions)
        states = self.states
        states.park(keep=chunk_models)  # idle models out before this chunk's joins are budgeted
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
        states.publish(self.engine.poll(_NEVER), check_owner=False)

    def _prepare(self, events: Sequence[dict[str, Any]], positions: Sequence[Any]) -> set[str]:
        """Note partitions that are new or jumped ahead; have their models (re)loaded; return the
        chunk's models."""
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
        self.states.refresh(new, moved)
        return models

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        """Pick up references stored meanwhile; close time windows whose end (plus grace) has
        passed; write them; save their state."""
        if self.references is not None:
            self.references.poll(now_s)
        self.states.publish(self.engine.poll(now_s), check_owner=True)

    def close(self) -> None:
        """At shutdown: save what is not saved yet. Open windows stay open (and in the state)."""
        self.states.publish(self.engine.poll(_NEVER), check_owner=True)


class _StageMetrics:
    """Prometheus metrics of the stage (no-ops without a registry)."""

    def __init__(self, registry: Any) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        from prometheus_client import Counter

        self.replays = Counter("driftline_detector_replays_skipped_total",
                               "Stored events not observed again (seen before a crash or a rebalance)",
                               registry=registry)

    def skipped(self, n: int) -> None:
        if self.enabled:
            self.replays.inc(n)


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
                park_after_s: float = 300.0, reference_poll_s: float = 10.0) -> DetectorStage:
    """Load stored references and return the stage. The store is already migrated: the process's
    entry point (:func:`driftline.collector.app.run_collector`) runs the one migrate at start.
    ``feature_detail_top``: see :class:`~driftline.detectors.metrics.EngineMetrics`;
    ``memory_budget_mb``: the detectors' state and pending joins of all models together
    (``detector_memory_budget_mb``); ``park_after_s``: idle time before a model may be unloaded
    under it (``detector_park_after_s``); ``reference_poll_s``: how often references stored
    meanwhile are picked up (:class:`ReferenceWatch`)."""
    from driftline.detectors.reference_store import ReferenceStore

    engine = DetectorEngine(config, registry=registry, feature_detail_top=feature_detail_top,
                            memory_budget_mb=memory_budget_mb)
    watch = ReferenceWatch(ReferenceStore(client), engine, interval_s=reference_poll_s)
    watch.load()
    states = ModelStates(engine, client, registry=registry, park_after_s=park_after_s)
    return DetectorStage(states, registry=registry, references=watch)


def build_observers(detectors_config: Path | None, client: Any, *, registry: Any = None,
                    feature_detail_top: int | None = None, memory_budget_mb: float | None = None,
                    park_after_s: float = 300.0, reference_poll_s: float = 10.0) -> list[DetectorStage]:
    """The collector's observers: the detector stage, always on.

    ``detectors_config`` names a YAML file (one document per model, ``---`` between them,
    ``model: "*"`` for the settings of every other model) or a directory of them; it is
    validated here, at start-up. Models it does not name are monitored with the defaults from
    their first event on (see ``DetectorsConfig.default_for``).
    """
    config = load_config(detectors_config) if detectors_config is not None else DetectorsConfig()
    return [build_stage(config, client, registry=registry, feature_detail_top=feature_detail_top,
                        memory_budget_mb=memory_budget_mb, park_after_s=park_after_s,
                        reference_poll_s=reference_poll_s)]
