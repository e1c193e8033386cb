"""The sidecar's public surface in one import (imports aiohttp; not part of ``import driftline.sdk``).

>>> from driftline.sdk.sidecar import SidecarSettings, build_app   # doctest: +SKIP
>>> app = build_app(SidecarSettings(upstream="http://127.0.0.1:9000", model="churn"),
...                 monitor_factory=lambda v: Monitor("churn", v), metrics=SidecarMetrics(registry))  # doctest: +SKIP

Pieces: :mod:`~driftline.sdk.sidecar_app` (the proxy), :mod:`~driftline.sdk.sidecar_config`
(settings), :mod:`~driftline.sdk.extract` (bodies -> features/predictions),
:mod:`~driftline.sdk.routing` (A/B and canary), :mod:`~driftline.sdk.shadow` (mirroring),
:mod:`~driftline.sdk.hygiene` (auth, rate limits, body limits, access log),
:mod:`~driftline.sdk.sidecar_metrics` (Prometheus), :mod:`~driftline.sdk.serve` (model files).
"""

from __future__ import annotations

from driftline.sdk.extract import ExtractSpec, extract
from driftline.sdk.routing import Router, SplitConfig, SplitFileWatcher, Variant
from driftline.sdk.sidecar_app import LocalBackend, LocalReply, Sidecar, SidecarKey, build_app
from driftline.sdk.sidecar_config import ShadowTarget, SidecarSettings
from driftline.sdk.sidecar_metrics import SidecarMetrics

__all__ = ["ExtractSpec", "LocalBackend", "LocalReply", "Router", "ShadowTarget", "Sidecar", "SidecarKey",
           "SidecarMetrics", "SidecarSettings", "SplitConfig", "SplitFileWatcher", "Variant", "build_app",
           "extract"]
