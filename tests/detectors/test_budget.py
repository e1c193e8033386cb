"""detectors/budget.py: one memory budget for the detector state and pending joins of every model —
evicts joins oldest first from the models holding most, counts per model, saves stay deltas once
it is hit (the unloading of idle models is tested on the real store in test_park.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from typing import Any

from prometheus_client import CollectorRegistry

from driftline.detectors.budget import ENTRY_BYTES, MemoryBudget
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import from_events
from driftline.detectors.state import ModelStates
from driftline.detectors.journal import inflate
from tests.detectors.detector_streams import T0, base_features, prediction

CFG = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 100_000},
                                    "min_samples": 50})
ROOM = 300  # pending entries the budget allows beside the models' state, all models
BUDGET_MB = 64.0  # until _room_for_joins sets it


def _room_for_joins(eng: DetectorEngine, entries: int) -> None:
    """Budget the models' state as it is now (their streams exist) plus ``entries`` pending joins."""
    state = sum(mon.state_bytes for mon in eng.monitors.values())
    assert state > 100_000  # two 10-feature models with a reference: their detectors take room too
    eng.budget.limit_bytes = state + entries * ENTRY_BYTES


def _engine(models: list[str], registry: Any = None) -> DetectorEngine:
    eng = DetectorEngine(CFG, registry=registry, memory_budget_mb=BUDGET_MB, clock=lambda: 0.0)
    rng = random.Random(1)
    ref = from_events([prediction(10**6 + i, base_features(rng), 1) for i in range(200)], "m", "*")
    for m in models:
        eng.set_reference(dataclasses.replace(ref, model=m))
        eng.ensure_model(CFG.default_for(m))
    return eng


def _chunk(models: dict[str, int], start: int) -> list[dict[str, Any]]:
    """``n`` unlabelled predictions per model (each waits for its label)."""
    rng = random.Random(start)
    out, i = [], start
    for m, n in models.items():
        for _ in range(n):
            out.append(prediction(i, base_features(rng), 1, model=m, t=i))
            i += 1
    return out


def test_the_budget_evicts_the_oldest_of_the_models_holding_most_and_counts_them(caplog: Any) -> None:
    reg = CollectorRegistry()
    eng = _engine(["noisy", "quiet"], reg)
    t = [0.0]
    eng.budget.clock = lambda: t[0]
    eng.observe_many(_chunk({"noisy": 200, "quiet": 20}, 0))
    assert eng.budget.pending == 220  # under the budget: nothing evicted
    _room_for_joins(eng, ROOM)
    with caplog.at_level(logging.WARNING, logger="driftline.detectors.budget"):
        eng.observe_many(_chunk({"noisy": 400}, 1000))
        t[0] = 61.0
        eng.observe_many(_chunk({"noisy": 10}, 5000))
    pend = {m: len(eng.monitors[m].pending_preds) for m in ("noisy", "quiet")}
    assert pend == {"noisy": ROOM - 20, "quiet": 20}  # the quiet model keeps all of its own
    assert eng.budget.pending == ROOM
    # the oldest went: the noisy model holds its newest predictions
    kept = [ts for ts, _ in eng.monitors["noisy"].pending_preds._items.values()]
    assert min(kept) - T0.timestamp() == 1400 - (ROOM - 20 - 10)  # all 10 of the last chunk, then 1399 down
    evicted = 200 + 400 + 10 - (ROOM - 20)
    assert reg.get_sample_value("driftline_label_join_evicted_total", {"model": "noisy"}) == evicted
    assert reg.get_sample_value("driftline_label_join_evicted_total", {"model": "quiet"}) is None
    assert reg.get_sample_value("driftline_detector_pending_joins") == ROOM
    assert reg.get_sample_value("driftline_detector_pending_joins_limit") == ROOM
    state = eng.budget.limit_bytes - ROOM * ENTRY_BYTES
    assert reg.get_sample_value("driftline_detector_state_resident_bytes") == state
    assert reg.get_sample_value("driftline_detector_models_resident") == 2
    assert eng.counts("noisy")["joins_evicted"] == evicted
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and f"evicted {evicted} pending entries" in lines[0], lines


def test_a_models_own_cap_counts_in_the_same_metric() -> None:
    reg = CollectorRegistry()
    cfg = DetectorsConfig.from_mapping({"model": "*", "concept": {"max_pending": 50}})
    eng = DetectorEngine(cfg, registry=reg, memory_budget_mb=100.0)
    eng.set_reference(from_events([prediction(10**6 + i, base_features(random.Random(i)), 1) for i in range(200)],
                                  "m", "*"))
    eng.ensure_model(cfg.default_for("m"))
    eng.observe_many(_chunk({"m": 80}, 0))
    assert reg.get_sample_value("driftline_label_join_evicted_total", {"model": "m"}) == 30


class _Client:
    """Keeps what ModelStates inserts (the insert is the store's business, not this test's)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []

    def insert(self, table: str, data: list[list[Any]], column_names: list[str]) -> None:
        self.rows += [dict(zip(column_names, r)) for r in data]


def test_once_the_budget_is_hit_saves_stay_deltas_and_load_back_to_the_state() -> None:
    models = ["a", "b"]
    eng = _engine(models)
    client = _Client()
    states = ModelStates(eng, client)
    for m in models:
        states._loaded.add(m)
        states._positions[m] = {}
    sizes = []
    for c in range(40):  # 40 chunks of 100 per model: the budget (300) is hit in the second
        eng.observe_many(_chunk({"a": 100, "b": 100}, 1000 * c))
        if c == 0:
            _room_for_joins(eng, ROOM)
        before = len(client.rows)
        states.publish(eng.poll(float("-inf")), check_owner=False)
        sizes.append([len(r["blob"]) for r in client.rows[before:]])
    assert eng.budget.pending == ROOM
    kinds = [r["key"] for r in client.rows]
    assert kinds.count("full") == len(models), kinds[:6]  # each model's first save only
    assert max(max(s) for s in sizes[5:]) < 2 * max(sizes[2]), sizes  # bounded by the chunk, not growing
    for m in models:  # the full snapshot and its deltas load to the state in memory
        recs = [r for r in client.rows if r["model"] == m]
        loaded = DetectorEngine(CFG, clock=lambda: 0.0)
        loaded.ensure_model(CFG.default_for(m))
        blobs = [r["blob"] for r in recs]
        loaded.load_model_state(m, blobs[0], blobs[1:])
        got, want = (json.loads(inflate(e.state_for(m)))["monitor"] for e in (loaded, eng))
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
        assert len(loaded.monitors[m].pending_preds) == ROOM // 2


def test_the_models_state_leaves_the_joins_at_least_their_share() -> None:
    """State beyond the budget does not squeeze the joins to nothing: they keep MIN_JOIN_SHARE."""
    from driftline.detectors.budget import MIN_JOIN_SHARE

    eng = _engine(["a", "b"])
    eng.observe_many(_chunk({"a": 200, "b": 200}, 0))
    eng.budget.limit_bytes = 400 * ENTRY_BYTES  # less than the two models' state alone
    eng.observe_many(_chunk({"a": 10, "b": 10}, 1000))
    assert eng.budget.limit == int(400 * MIN_JOIN_SHARE) == eng.budget.pending


def test_a_models_state_estimate_is_near_its_measured_memory() -> None:
    """The estimate the budget counts (MonitorState.state_bytes) against tracemalloc's measure of
    the same models, pending joins apart: within 0.7x-1.5x for three shapes of model."""
    import gc
    import tracemalloc

    shapes = [({}, 20, 1), ({"multivariate": {"enabled": False}}, 20, 1), ({}, 60, 3)]
    for extra, n_features, n_segments in shapes:
        cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 500},
                                            "segments": {"tags": ["region"]}, **extra})
        rng = random.Random(3)
        ref_events = [prediction(10**6 + i, _features(rng, n_features), 1) for i in range(500)]
        stream = [prediction(i, _features(rng, n_features), 1, model=f"m{i % 6}", t=i,
                             tags={"region": f"r{i % n_segments}"}) for i in range(1800)]
        warm = DetectorEngine(cfg)  # imports and caches out of the measure
        warm.set_reference(from_events(ref_events, "w", "*"))
        warm.ensure_model(cfg.default_for("w"))
        warm.observe_many([dict(e, model="w") for e in stream[:300]])
        gc.collect()
        tracemalloc.start()
        try:
            eng = DetectorEngine(cfg, memory_budget_mb=10_000.0)  # its estimate is made as the budget makes it
            for m in range(6):  # each model its own reference, as loaded from the store
                eng.set_reference(from_events(ref_events, f"m{m}", "*"))
                eng.ensure_model(cfg.default_for(f"m{m}"))
            eng.observe_many(stream)
            for m in eng.monitors:
                eng.state_for(m, delta=True)
                eng.mark_saved(m)
            for m in eng.monitors:  # the joins apart: the budget counts them by entry
                for s in eng.monitors[m].stores:
                    while len(s):
                        s.evict_oldest()
                eng.state_for(m, delta=True)
                eng.mark_saved(m)
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        estimate = sum(mon.state_bytes for mon in eng.monitors.values())
        assert 0.7 < estimate / traced < 1.5, (extra, n_features, n_segments, estimate, traced)


def _features(rng: random.Random, n: int) -> dict[str, float]:
    return {f"x{k}": rng.gauss(0.0, 1.0) for k in range(n)}


def test_a_budget_must_hold_something() -> None:
    import pytest

    with pytest.raises(ValueError, match="> 0 MB"):
        MemoryBudget(0)


def test_evicted_joins_are_said_in_the_models_next_window() -> None:
    """Joins evicted for room come out as one ``memory`` / ``joins_evicted`` row per window, with
    the count since the last one by kind (the dashboard's notice reads it); none when none were."""
    from driftline.detectors.base import MEMORY_NOTICE_DETECTOR, STAT_JOINS_EVICTED

    cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 150}, "min_samples": 50,
                                        "concept": {"max_pending": 100}})
    eng = DetectorEngine(cfg, clock=lambda: 0.0)
    eng.set_reference(from_events([prediction(10**6 + i, base_features(random.Random(i)), 1) for i in range(200)],
                                  "m", "*"))
    eng.ensure_model(cfg.default_for("m"))

    def notices() -> list[Any]:
        return [r for r in eng.poll(float("-inf")) if r.detector == MEMORY_NOTICE_DETECTOR]

    eng.observe_many(_chunk({"m": 150}, 0))  # one window; 50 of its predictions evicted by max_pending
    eng.observe_many(_chunk({"m": 150}, 1000))  # the next: 150 more
    first, second = notices()
    assert (first.statistic, first.value, second.value) == (STAT_JOINS_EVICTED, 50.0, 150.0)
    assert json.loads(second.details) == {"predictions": 150, "labels": 0, "shadows": 0, "outcomes": 0}
    assert eng.counts("m")["joins_evicted"] == 200
    roomy = DetectorEngine(DetectorsConfig.from_mapping(
        {"model": "*", "window": {"kind": "count", "size": 150}, "min_samples": 50}), clock=lambda: 0.0)
    roomy.ensure_model(roomy.config.default_for("m"))
    roomy.observe_many(_chunk({"m": 300}, 0))  # two windows, nothing evicted: nothing said
    rows = roomy.poll(float("-inf"))
    assert rows and not [r for r in rows if r.detector == MEMORY_NOTICE_DETECTOR]


def test_joins_the_budget_evicted_ask_for_idle_models_to_leave_first() -> None:
    """enforce() keeps the total within the budget by evicting joins; what it evicted is what
    over() then asks the idle models to free (MemoryBudget.pressure), until parked() is told."""
    eng = _engine(["a", "b"])
    eng.observe_many(_chunk({"a": 200, "b": 200}, 0))
    _room_for_joins(eng, ROOM)
    assert eng.budget.over(eng.monitors) > 0  # 400 joins, room for 300
    eng.observe_many(_chunk({"a": 10}, 1000))
    assert eng.budget.pending == ROOM
    assert eng.budget.over(eng.monitors) == 110 * ENTRY_BYTES  # within the budget now, but 110 evicted
    eng.budget.parked(0, eng.monitors, 0)
    assert eng.budget.over(eng.monitors) <= 0
