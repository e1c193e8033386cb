"""One memory budget for the collector's detectors, across models: their state and their joins.

Two things take a collector's detector memory. The **state** of each model: histograms of every
version, segment and feature, multivariate and concept detectors, references, and the copy of
that core a delta save diffs against; bounded per model, ~0.5 MiB for a 20-feature model, so it
grows with the fleet. The **pending joins**: predictions waiting for their label, labels waiting
for their prediction, primaries waiting for a shadow, requests waiting for an outcome
(:class:`~driftline.detectors.join.PendingStore`, capped per model by ``concept.max_pending``);
they grow with traffic (10 models plateaued at 1.84 GB under the per-model caps alone). The
collector holds both under one budget, ``detector_memory_budget_mb``
(:class:`~driftline.collector.config.CollectorSettings`), in this order:

1. **Idle models are unloaded** ("parked"): before each chunk and after each save, when the
   estimate is above the budget or the budget evicted joins since the last look, every model that
   had no event for ``detector_park_after_s`` leaves memory. Nothing is lost: their state is saved
   already, and their next event loads it again, as at a restart
   (:meth:`~driftline.detectors.state.ModelStates.park`). A model with a time window still open is
   kept until the window closes (it closes on the clock, not on an event).
2. **Pending joins are evicted**: after each chunk :meth:`MemoryBudget.enforce` gives the joins
   what the resident models' state leaves of the budget (never less than :data:`MIN_JOIN_SHARE` of
   it) and evicts above that, oldest first within a model, from the models holding the most: every
   model keeps at least its fair share (a water level), so a noisy model cannot push out a quiet
   one's few pending labels.
3. What cannot go is said: when the state of models that are all active exceeds the budget, a
   warning names the estimate and the budget (raise ``detector_memory_budget_mb``).

A model's state size is an estimate (:func:`approx_bytes` of its state's JSON form, times
:data:`STATE_FACTOR`; measured against ``tracemalloc`` in the tests), recomputed when what it
holds changes shape (a version, segment or reference added), not per event. Evictions (the
budget's and the per-model caps') are counted per model in
``driftline_label_join_evicted_total{model}``, parked models in
``driftline_detector_models_parked_total``, and each summed in a log line per ``log_every_s``;
``driftline_detector_state_resident_bytes`` and ``driftline_detector_models_resident`` show what is
held.

>>> class M:  # a stand-in for ModelMonitor: its stores
...     def __init__(self, n):
...         from driftline.detectors.join import PendingStore
...         self.stores = (PendingStore(3600, 10**6),)
...         for i in range(n): self.stores[0].put(f"k{i}", float(i), None)
>>> b = MemoryBudget(1, entry_bytes=2**20 // 100)  # room for 100 entries
>>> mons = {"big": M(500), "quiet": M(10)}
>>> b.enforce(mons)
{'big': 410}
>>> len(mons["big"].stores[0]), len(mons["quiet"].stores[0])
(90, 10)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Mapping

__all__ = ["MemoryBudget", "ENTRY_BYTES", "MIN_JOIN_SHARE", "REF_FACTOR", "STATE_FACTOR", "approx_bytes",
           "water_level"]

log = logging.getLogger(__name__)

#: Resident bytes of one pending entry (key, event time, payload, the dict slot): ~900 measured
#: with a class-score prediction and two segments (10 models x 200,000 entries plateaued at
#: 1.84 GB). An estimate: the budget bounds entries, which is what grows.
ENTRY_BYTES = 900
#: the pending joins' share of the budget when the resident models' state would leave them less
MIN_JOIN_SHARE = 0.25
#: resident bytes of a model's state per byte :func:`approx_bytes` counts in its JSON form: the
#: live detectors and the JSON copy of the core that delta saves diff against (two copies), with
#: the live ones' containers (numpy arrays, detector objects) a little larger than the JSON's
STATE_FACTOR = 1.7
#: resident bytes of a reference per byte of its JSON: its objects and the JSON itself, kept once made
REF_FACTOR = 1.8

_SCALAR_BYTES = {float: 24, int: 28, bool: 0, type(None): 0}


def approx_bytes(value: Any) -> int:
    """Approximate resident bytes of JSON-like data as CPython objects (64-bit): containers with
    their slots, floats, ints and strings; shared small objects (None, bools) free.

    >>> approx_bytes([1.0, 2.0]), approx_bytes({"a": [1.0]}), approx_bytes("abc")
    (120, 242, 52)
    """
    if isinstance(value, dict):
        return 64 + 40 * len(value) + sum(approx_bytes(k) + approx_bytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        n = len(value)
        sizes = _SCALAR_BYTES
        if n and all(type(v) in sizes for v in value):  # most lists are bins: no recursion
            return 56 + 8 * n + sum(sizes[type(v)] for v in value)
        return 56 + 8 * n + sum(approx_bytes(v) for v in value)
    if isinstance(value, str):
        return 49 + len(value)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays
    if isinstance(nbytes, int):
        return 112 + nbytes
    return _SCALAR_BYTES.get(type(value), 32)


def _state_of(monitors: Mapping[str, Any]) -> int:
    """The resident models' estimated state (stand-ins without an estimate count 0)."""
    return sum(getattr(mon, "state_bytes", 0) for mon in monitors.values())


def water_level(sizes: Iterable[int], limit: int) -> int | None:
    """The largest level L with sum(min(size, L)) <= limit; None when every size fits as it is.

    >>> water_level([10, 500], 100), water_level([10, 20], 100)
    (90, None)
    """
    ordered = sorted(sizes)
    remaining = limit
    for i, s in enumerate(ordered):
        share = len(ordered) - i
        if s * share > remaining:
            return remaining // share
        remaining -= s
    return None


class MemoryBudget:
    """Holds the detectors' state and pending joins of every model under ``budget_mb`` (see the
    module notes). ``limit`` is the pending entries the last :meth:`enforce` allowed."""

    def __init__(self, budget_mb: float, *, entry_bytes: int = ENTRY_BYTES, registry: Any = None,
                 clock: Callable[[], float] = time.monotonic, log_every_s: float = 60.0) -> None:
        if not budget_mb > 0:
            raise ValueError(f"memory budget must be > 0 MB, got {budget_mb}")
        self.budget_mb = budget_mb
        self.limit_bytes = int(budget_mb * 2**20)
        self.entry_bytes = entry_bytes
        self.limit = self.limit_bytes // entry_bytes  # pending entries, all models
        self.pending = 0
        self.state_bytes = 0  # estimated state of the resident models, as of the last enforce
        self.pressure = 0  # bytes of joins evicted since idle models were last unloaded
        self.clock = clock
        self.log_every_s = log_every_s
        self._seen: dict[str, int] = {}  # per model: evictions already counted
        self._unlogged = 0
        self._unlogged_models: set[str] = set()
        self._logged_at = clock()
        self._parked_unlogged = 0
        self._over_logged_at = float("-inf")
        self.metrics = _BudgetMetrics(registry, self.limit, self.limit_bytes)

    def enforce(self, monitors: Mapping[str, Any], touched: Iterable[str] = ()) -> dict[str, int]:
        """Evict pending joins above what the models' state leaves of the budget; count evictions of
        the evicted and ``touched`` models (whose own caps may have evicted); return {model:
        entries the budget evicted}."""
        touched = set(touched)
        for m in touched:
            mon = monitors.get(m)
            if mon is not None and hasattr(mon, "measure"):
                mon.measure()
        self.state_bytes = _state_of(monitors)
        room = max(self.limit_bytes - self.state_bytes, int(self.limit_bytes * MIN_JOIN_SHARE))
        self.limit = room // self.entry_bytes
        sizes = {m: sum(len(s) for s in mon.stores) for m, mon in monitors.items()}
        total = sum(sizes.values())
        evicted: dict[str, int] = {}
        level = water_level(sizes.values(), self.limit) if total > self.limit else None
        if level is not None:
            for m, size in sizes.items():
                if size > level:
                    evicted[m] = _evict_oldest(monitors[m].stores, size - level)
                    total -= evicted[m]
            self.pressure += self.entry_bytes * sum(evicted.values())
        self.pending = total
        self.metrics.held(total, self.limit, self.state_bytes, len(monitors))
        for m in set(touched) | set(evicted):
            mon = monitors.get(m)
            if mon is not None:
                self._count(m, sum(s.evicted for s in mon.stores))
        self._maybe_log()
        return evicted

    def over(self, monitors: Mapping[str, Any]) -> int:
        """Bytes to free by unloading idle models (<= 0: none): what state and pending joins hold
        above the budget now, or, if more, the joins the budget evicted since the last
        :meth:`parked` (:meth:`enforce` keeps the total within the budget by evicting joins, so
        without this the joins would go before the idle models do)."""
        held = sum(getattr(mon, "state_bytes", 0) + self.entry_bytes * sum(len(s) for s in mon.stores)
                   for mon in monitors.values())
        return max(held - self.limit_bytes, self.pressure)

    def parked(self, n: int, monitors: Mapping[str, Any], still_over: int) -> None:
        """``n`` idle models were unloaded; ``still_over`` bytes remain above the budget."""
        self.pressure = 0
        self._parked_unlogged += n
        self.metrics.parked(n)
        self.state_bytes = _state_of(monitors)
        self.metrics.held(self.pending, self.limit, self.state_bytes, len(monitors))
        now = self.clock()
        if still_over > 0 and self.state_bytes > self.limit_bytes * (1 - MIN_JOIN_SHARE) \
                and now - self._over_logged_at >= self.log_every_s:
            self._over_logged_at = now
            log.warning("detector memory: the state of %d resident model(s) is ~%.0f MiB (estimated), above what "
                        "detector_memory_budget_mb=%g leaves after the label joins' share, and none of them is "
                        "idle enough to unload (detector_park_after_s): raise the budget",
                        len(monitors), self.state_bytes / 2**20, self.budget_mb)
        self._maybe_log()

    def reset_count(self, model: str, evicted: int) -> None:
        """``model``'s state was (re)loaded holding ``evicted``: those were counted by its saver."""
        self._seen[model] = evicted

    def _count(self, model: str, now: int) -> None:
        n = now - self._seen.get(model, 0)
        self._seen[model] = now
        if n > 0:
            self.metrics.evicted(model, n)
            self._unlogged += n
            self._unlogged_models.add(model)

    def _maybe_log(self) -> None:
        now = self.clock()
        if (self._unlogged or self._parked_unlogged) and now - self._logged_at >= self.log_every_s:
            if self._unlogged:
                log.warning("label-join memory: evicted %d pending entries (oldest first) from %d model(s) in the "
                            "last %.0f s; %d pending, room for %d beside ~%.0f MiB of model state "
                            "(detector_memory_budget_mb=%g)",
                            self._unlogged, len(self._unlogged_models), now - self._logged_at, self.pending,
                            self.limit, self.state_bytes / 2**20, self.budget_mb)
            if self._parked_unlogged:
                log.info("detector memory: unloaded %d idle model(s) in the last %.0f s (state saved; loaded again "
                         "on their next event); ~%.0f MiB of model state resident (detector_memory_budget_mb=%g)",
                         self._parked_unlogged, now - self._logged_at, self.state_bytes / 2**20, self.budget_mb)
            self._unlogged, self._unlogged_models, self._parked_unlogged = 0, set(), 0
            self._logged_at = now
        elif not (self._unlogged or self._parked_unlogged):
            self._logged_at = now


def _evict_oldest(stores: Iterable[Any], n: int) -> int:
    """Evict ``n`` entries from ``stores`` (one model's), the oldest in event time first."""
    live = [s for s in stores if len(s)]
    done = 0
    while done < n and live:
        oldest = min(live, key=lambda s: s.oldest_ts())
        oldest.evict_oldest()
        done += 1
        if not len(oldest):
            live.remove(oldest)
    return done


class _BudgetMetrics:
    """Prometheus metrics of the budget (no-ops without a registry)."""

    def __init__(self, registry: Any, limit: int, limit_bytes: int) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        from prometheus_client import Counter, Gauge

        self.evictions = Counter("driftline_label_join_evicted_total",
                                 "Pending joins evicted for room (detector memory budget or a model's max_pending)",
                                 ["model"], registry=registry)
        self.parks = Counter("driftline_detector_models_parked_total",
                             "Idle models unloaded for room (state saved; loaded again on their next event)",
                             registry=registry)
        self.pending_joins = Gauge("driftline_detector_pending_joins",
                                   "Pending joins held by the detectors, all models", registry=registry)
        self.limit_gauge = Gauge("driftline_detector_pending_joins_limit",
                                 "Pending joins the detector memory budget allows beside the models' state",
                                 registry=registry)
        self.limit_gauge.set(limit)
        self.state = Gauge("driftline_detector_state_resident_bytes",
                           "Estimated memory of the resident models' detector state (joins apart)", registry=registry)
        self.resident = Gauge("driftline_detector_models_resident", "Models whose detector state is in memory",
                              registry=registry)
        budget = Gauge("driftline_detector_memory_budget_bytes",
                       "detector_memory_budget_mb: detector state and pending joins, all models", registry=registry)
        budget.set(limit_bytes)

    def evicted(self, model: str, n: int) -> None:
        if self.enabled:
            self.evictions.labels(model).inc(n)

    def parked(self, n: int) -> None:
        if self.enabled and n:
            self.parks.inc(n)

    def held(self, pending: int, limit: int, state_bytes: int, models: int) -> None:
        if self.enabled:
            self.pending_joins.set(pending)
            self.limit_gauge.set(limit)
            self.state.set(state_bytes)
            self.resident.set(models)
