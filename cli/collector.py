"""``driftline collector``: the stream path with the detector stage plugged in.

The collector (``collector/``) runs whatever observers it is handed and imports nothing from
``detectors/``; the detector stage (``detectors/stage.py``) knows nothing of the collector's
process. This command is the one place that knows both, so it lives here, above them.
"""

from __future__ import annotations

import argparse
from typing import Any

from driftline.collector.cli import add_collector_parser, collector_settings


def _collector(args: argparse.Namespace) -> int:
    from driftline.collector.app import run_collector
    from driftline.detectors.stage import build_observers

    settings = collector_settings(args)

    def observers(client: Any, registry: Any) -> list[Any]:
        return build_observers(settings.detectors_config, client, registry=registry,
                               feature_detail_top=settings.feature_detail_top,
                               memory_budget_mb=settings.detector_memory_budget_mb,
                               park_after_s=settings.detector_park_after_s,
                               reference_poll_s=settings.reference_poll_s,
                               held_ack_after_s=settings.detector_held_ack_after_s,
                               state_retry_s=settings.detector_state_retry_s,
                               save_interval_s=settings.detector_save_interval_s)

    run_collector(settings, observers=observers)
    return 0


def register(sub: Any) -> None:
    add_collector_parser(sub).set_defaults(handler=_collector)
