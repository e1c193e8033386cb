"""One memory budget for the collector's detectors, across models.

What grows with traffic in a collector is the label-join window and its kin: predictions waiting
for their label, labels waiting for their prediction, primaries waiting for a shadow, requests
waiting for an outcome (:class:`~driftline.detectors.join.PendingStore`, capped per model by
``concept.max_pending``). With many models the per-model caps add up (10 models plateaued at
1.84 GB), so the collector also holds all of them under one budget,
``detector_memory_budget_mb`` (:class:`~driftline.collector.config.CollectorSettings`).

After each chunk :meth:`MemoryBudget.enforce` counts the pending entries of every model; above the
budget it evicts, oldest first within a model, from the models holding the most: every model keeps
at least its fair share (a water level), so a noisy model cannot push out a quiet one's few
pending labels. Evictions (the budget's and the per-model caps') are counted per model in
``driftline_label_join_evicted_total{model}`` and summed in one log line per ``log_every_s``.
Histograms are bounded per feature by their bins and are not evicted (they are the detectors).

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

__all__ = ["MemoryBudget", "ENTRY_BYTES", "water_level"]

log = logging.getLogger(__name__)

#: Resident bytes of one pending entry (key, event time, payload, the dict slot): ~900 measured
#: with a class-score prediction and two segments (10 models x 200,000 entries plateaued at
#: 1.84 GB). An estimate: the budget bounds entries, which is what grows.
ENTRY_BYTES = 900


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
    """Holds the pending joins of every model under ``budget_mb`` (see the module notes)."""

    def __init__(self, budget_mb: float, *, entry_bytes: int = ENTRY_BYTES, registry: Any = None,
                 clock: Callable[[], float] = time.monotonic, log_every_s: float = 60.0) -> None:
        if not budget_mb > 0:
            raise ValueError(f"memory budget must be > 0 MB, got {budget_mb}")
        self.budget_mb = budget_mb
        self.limit = int(budget_mb * 2**20 / entry_bytes)  # pending entries, all models
        self.pending = 0
        self.clock = clock
        self.log_every_s = log_every_s
        self._seen: dict[str, int] = {}  # per model: evictions already counted
        self._unlogged = 0
        self._unlogged_models: set[str] = set()
        self._logged_at = clock()
        self.metrics = _BudgetMetrics(registry, self.limit)

    def enforce(self, monitors: Mapping[str, Any], touched: Iterable[str] = ()) -> dict[str, int]:
        """Evict above the budget; count evictions of the evicted and ``touched`` models (whose
        own caps may have evicted); return {model: entries the budget evicted}."""
        sizes = {m: sum(len(s) for s in mon.stores) for m, mon in monitors.items()}
        total = sum(sizes.values())
        evicted: dict[str, int] = {}
        level = water_level(sizes.values(), self.limit) if total > self.limit else None
        if level is not None:
            for m, size in sizes.items():
                if size > level:
                    evicted[m] = _evict_oldest(monitors[m].stores, size - level)
                    total -= evicted[m]
        self.pending = total
        self.metrics.pending(total)
        for m in set(touched) | set(evicted):
            mon = monitors.get(m)
            if mon is not None:
                self._count(m, sum(s.evicted for s in mon.stores))
        self._maybe_log()
        return evicted

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
        if self._unlogged and now - self._logged_at >= self.log_every_s:
            log.warning("label-join memory: evicted %d pending entries (oldest first) from %d model(s) in the "
                        "last %.0f s; %d pending, budget %d entries (detector_memory_budget_mb=%g)",
                        self._unlogged, len(self._unlogged_models), now - self._logged_at, self.pending,
                        self.limit, self.budget_mb)
            self._unlogged, self._unlogged_models = 0, set()
            self._logged_at = now
        elif not self._unlogged:
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

    def __init__(self, registry: Any, limit: int) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        from prometheus_client import Counter, Gauge

        self.evictions = Counter("driftline_label_join_evicted_total",
                                 "Pending joins evicted for room (detector memory budget or a model's max_pending)",
                                 ["model"], registry=registry)
        self.pending_joins = Gauge("driftline_detector_pending_joins",
                                   "Pending joins held by the detectors, all models", registry=registry)
        limit_gauge = Gauge("driftline_detector_pending_joins_limit",
                            "Pending joins the detector memory budget allows, all models", registry=registry)
        limit_gauge.set(limit)

    def evicted(self, model: str, n: int) -> None:
        if self.enabled:
            self.evictions.labels(model).inc(n)

    def pending(self, n: int) -> None:
        if self.enabled:
            self.pending_joins.set(n)
