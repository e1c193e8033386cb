"""Prometheus metrics of the collector, on an injected registry (no global default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: the detector stage's gauge of stored events it holds unacknowledged (``detectors/stage.py``),
#: which ``driftline up``'s stop reads to say why records are not committed yet
HELD_GAUGE = "driftline_detector_events_held"
#: the detector stage's gauge of how long the store has refused its output (drift rows, state):
#: offsets wait meanwhile, for at most ``detector_held_ack_after_s``; ``driftline up``'s stop says so
UNWRITTEN_GAUGE = "driftline_detector_output_unwritten_seconds"


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter("driftline_collector_events_consumed_total",
                                "Records read from Kafka", ["topic"], registry=registry)
        self.stored = Counter("driftline_collector_events_stored_total",
                              "Events written to ClickHouse", ["table"], registry=registry)
        self.deadlettered = Counter("driftline_collector_events_deadlettered_total",
                                    "Records refused and sent to the dead-letter topic", ["reason"],
                                    registry=registry)
        self.duplicates = Counter("driftline_collector_duplicates_total",
                                  "Replayed or repeated events skipped because already stored",
                                  registry=registry)
        self.write_errors = Counter("driftline_collector_write_errors_total",
                                    "Failed batch writes to ClickHouse (retried)", registry=registry)
        self.reinserted = Counter("driftline_collector_rows_reinserted_total",
                                  "Rows inserted again because ClickHouse stored them without running the "
                                  "rollups' materialized views", registry=registry)
        self.batch_write_seconds = Histogram(
            "driftline_collector_batch_write_seconds", "Time to store one batch in ClickHouse",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
        self.batch_events = Histogram(
            "driftline_collector_batch_events", "Events per stored batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000), registry=registry)
        self.ticks_skipped = Counter("driftline_collector_ticks_skipped_total",
                                     "Timer ticks not queued because the previous tick was still queued or running",
                                     registry=registry)
        self.consumer_lag = Gauge("driftline_collector_consumer_lag_events",
                                  "Records behind the partition's high watermark",
                                  ["topic", "partition"], registry=registry)
