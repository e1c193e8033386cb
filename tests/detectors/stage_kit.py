"""The collector's Pipeline with a DetectorStage on the real store, as the stage tests drive it."""

from __future__ import annotations

from typing import Any


def stage_pipeline(cfg: Any, ch_client: Any, *, max_batch_events: int, registry: Any = None,
                   **stage: Any) -> tuple[Any, Any]:
    """(Pipeline, DetectorStage) writing through ``ch_client``, its own metrics registry unless
    one is given, no dead letters; ``stage``: more arguments of ``build_stage``."""
    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.stage import build_stage

    reg = CollectorRegistry() if registry is None else registry
    stage = build_stage(cfg, ch_client, registry=reg, **stage)
    return Pipeline(ClickHouseWriter(ch_client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                    observers=[stage], max_batch_events=max_batch_events), stage
