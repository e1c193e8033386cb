"""Prometheus metrics of the sidecar and ``driftline serve``, on an injected registry.

``driftline_sidecar_requests_total{variant,status}``      requests by variant and HTTP status
``driftline_sidecar_upstream_seconds{variant}``           upstream (or model) time, request to body
``driftline_sidecar_overhead_seconds``                    the sidecar's own time around that
``driftline_sidecar_shadow_requests_total{shadow,outcome}`` mirrored requests (ok, error, skipped)
``driftline_sidecar_shadow_errors_total{shadow,reason}``  shadow failures (timeout, connect, http_5xx...)
``driftline_sidecar_exporter_queue_depth``                events waiting in the exporter queue
``driftline_sidecar_exporter_dropped_total{reason}``      events dropped by the exporter, by reason
``driftline_sidecar_exporter_exported_total``             events delivered
``driftline_sidecar_split_reload_errors_total``           split files that failed to load
``driftline_sidecar_handoff_dropped_total{reason}``       requests whose events were lost before the
                                                          event worker took them (buffer_full,
                                                          worker_down, worker_died, shutdown)
``driftline_sidecar_event_worker_restarts_total``         event worker processes that died and were restarted
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from driftline.sdk.export import DROP_REASONS, ExporterStats

# Sub-millisecond buckets: the overhead target is 1 ms at p50 and 3 ms at p99.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 1.0)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0)


class _ExporterCollector(Collector):
    """Reads the exporters' counters at scrape time (no background thread, no double counting)."""

    def __init__(self, stats: Callable[[], Iterable[ExporterStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        queued = exported = 0
        dropped = {reason: 0 for reason in DROP_REASONS}
        for s in self._stats():
            queued += s.queued + s.pending_retry
            exported += s.exported
            for reason, n in s.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
        depth = GaugeMetricFamily("driftline_sidecar_exporter_queue_depth",
                                  "Events waiting in the exporter queue (including retries)")
        depth.add_metric([], queued)
        yield depth
        drops = CounterMetricFamily("driftline_sidecar_exporter_dropped",
                                    "Events dropped by the exporter, by reason", labels=["reason"])
        for reason, n in sorted(dropped.items()):
            drops.add_metric([reason], n)
        yield drops
        done = CounterMetricFamily("driftline_sidecar_exporter_exported", "Events delivered by the exporter")
        done.add_metric([], exported)
        yield done


class SidecarMetrics:
    """All sidecar metrics, registered on ``registry`` (never the global default)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("driftline_sidecar_requests", "Requests by variant and HTTP status",
                                ["variant", "status"], registry=registry)
        self.upstream_seconds = Histogram("driftline_sidecar_upstream_seconds",
                                          "Time spent waiting for the upstream or model",
                                          ["variant"], buckets=UPSTREAM_BUCKETS, registry=registry)
        self.overhead_seconds = Histogram("driftline_sidecar_overhead_seconds",
                                          "Time the sidecar adds around the upstream call",
                                          buckets=OVERHEAD_BUCKETS, registry=registry)
        self.shadow_requests = Counter("driftline_sidecar_shadow_requests", "Mirrored requests by outcome",
                                       ["shadow", "outcome"], registry=registry)
        self.shadow_errors = Counter("driftline_sidecar_shadow_errors", "Shadow failures by reason",
                                     ["shadow", "reason"], registry=registry)
        self.split_reload_errors = Counter("driftline_sidecar_split_reload_errors",
                                           "Split files that failed to load (the last good split stays)",
                                           registry=registry)
        self.handoff_dropped = Counter("driftline_sidecar_handoff_dropped",
                                       "Requests whose events were lost before the event worker took them",
                                       ["reason"], registry=registry)
        self.worker_restarts = Counter("driftline_sidecar_event_worker_restarts",
                                       "Event worker processes that died and were restarted", registry=registry)
        # Label children cached: .labels() costs a lock and a dict lookup on every call.
        self._req_children: dict[tuple[str, int], Any] = {}
        self._up_children: dict[str, Any] = {}

    def watch_exporters(self, stats: Callable[[], Iterable[ExporterStats]]) -> None:
        """Report queue depth and drops of the exporters ``stats()`` returns, read at scrape time."""
        self.registry.register(_ExporterCollector(stats))

    def observe_request(self, variant: str, status: int, upstream_s: float | None, overhead_s: float) -> None:
        key = (variant, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(variant, str(status))
        child.inc()
        if upstream_s is not None:
            up = self._up_children.get(variant)
            if up is None:
                up = self._up_children[variant] = self.upstream_seconds.labels(variant)
            up.observe(upstream_s)
        self.overhead_seconds.observe(max(0.0, overhead_s))

    def generate(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
