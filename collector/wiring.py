"""Build the optional stages of the pipeline (PII scrubber, detector engine) from settings."""

from __future__ import annotations

from typing import Any

from driftline.collector.config import CollectorSettings


def build_scrubber(settings: CollectorSettings, registry: Any) -> Any:
    return None


def build_observers(settings: CollectorSettings, client: Any, registry: Any) -> list[Any]:
    return []
