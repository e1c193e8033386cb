"""The sidecar's public surface in one import (imports aiohttp; not part of ``import driftline.sdk``).

>>> from driftline.sdk.sidecar import SidecarSettings, build_app   # doctest: +SKIP
>>> app = build_app(SidecarSettings(upstream="http://127.0.0.1:9000", model="churn"),
...                 monitor_factory=lambda v: Monitor("churn", v), metrics=SidecarMetrics(registry))  # doctest: +SKIP

Pieces: :mod:`~driftline.sdk.sidecar.app` (the proxy), :mod:`~driftline.sdk.sidecar.config`
(settings), :mod:`~driftline.sdk.sidecar.extraction` (bodies -> features/predictions),
:mod:`~driftline.sdk.sidecar.routing` (A/B and canary), :mod:`~driftline.sdk.sidecar.shadow` (mirroring),
:mod:`~driftline.sdk.sidecar.hygiene` (auth, rate limits, body limits, access log),
:mod:`~driftline.sdk.sidecar.metrics` (Prometheus), :mod:`~driftline.sdk.sidecar.serve` (model files).
"""

from __future__ import annotations

from driftline.sdk.sidecar.extraction import ExtractSpec, extract
from driftline.sdk.sidecar.routing import Router, SplitConfig, SplitFileWatcher, Variant
from driftline.sdk.sidecar.app import LocalBackend, LocalReply, Sidecar, SidecarKey, build_app
from driftline.sdk.sidecar.config import ShadowTarget, SidecarSettings
from driftline.sdk.sidecar.metrics import SidecarMetrics

__all__ = ["ExtractSpec", "LocalBackend", "LocalReply", "Router", "ShadowTarget", "Sidecar", "SidecarKey",
           "SidecarMetrics", "SidecarSettings", "SplitConfig", "SplitFileWatcher", "Variant", "build_app",
           "extract"]
