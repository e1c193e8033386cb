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

from pathlib import Path
from typing import Any, Sequence

from driftline.detectors.config import DetectorsConfig, load_config
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.state import ModelStates, Source

_NEVER = float("-inf")


class DetectorStage:
    """Feeds stored events to the engine of ``states`` exactly once; publishes its rows and state.

    >>> # stage = DetectorStage(ModelStates(DetectorEngine(cfg, registry=reg), client, registry=reg))
    >>> # pipeline = Pipeline(writer, metrics, ..., observers=[stage])
    """

    def __init__(self, states: ModelStates, *, registry: Any = None) -> None:
        self.states = states
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
        self._prepare(events, positions)
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
        states.publish(self.engine.poll(_NEVER), check_owner=False)

    def _prepare(self, events: Sequence[dict[str, Any]], positions: Sequence[Any]) -> None:
        """Note partitions that are new or jumped ahead; have their models (re)loaded."""
        new: set[str] = set()
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
            if not self.states.loaded(model):
                new.add(model)
        self.states.refresh(new, moved)

    # -- time -----------------------------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        """Close time windows whose end (plus grace) has passed; write them; save their state."""
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


def build_stage(config: DetectorsConfig, client: Any, *, registry: Any = None,
                feature_detail_top: int | None = None, memory_budget_mb: float | None = None) -> DetectorStage:
    """Load stored references and return the stage. The store is already migrated: the process's
    entry point (:func:`driftline.collector.app.run_collector`) runs the one migrate at start.
    ``feature_detail_top``: see :class:`~driftline.detectors.metrics.EngineMetrics`;
    ``memory_budget_mb``: the pending joins of all models together (``detector_memory_budget_mb``)."""
    from driftline.detectors.reference import ReferenceStore

    engine = DetectorEngine(config, registry=registry, feature_detail_top=feature_detail_top,
                            memory_budget_mb=memory_budget_mb)
    for ref in ReferenceStore(client).load_all():
        engine.set_reference(ref)
    return DetectorStage(ModelStates(engine, client, registry=registry), registry=registry)


def build_observers(detectors_config: Path | None, client: Any, *, registry: Any = None,
                    feature_detail_top: int | None = None,
                    memory_budget_mb: float | None = None) -> list[DetectorStage]:
    """The collector's observers: the detector stage, always on.

    ``detectors_config`` names a YAML file (one document per model, ``---`` between them,
    ``model: "*"`` for the settings of every other model) or a directory of them; it is
    validated here, at start-up. Models it does not name are monitored with the defaults from
    their first event on (see ``DetectorsConfig.default_for``).
    """
    config = load_config(detectors_config) if detectors_config is not None else DetectorsConfig()
    return [build_stage(config, client, registry=registry, feature_detail_top=feature_detail_top,
                        memory_budget_mb=memory_budget_mb)]
