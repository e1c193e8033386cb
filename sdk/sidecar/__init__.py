"""driftline.sdk.sidecar: the sidecar and ``driftline serve`` (needs the server extra: aiohttp, prometheus-client).

>>> from driftline.sdk.sidecar import SidecarSettings, build_app   # doctest: +SKIP
>>> app = build_app(SidecarSettings(upstream="http://127.0.0.1:9000", model="churn"),
...                 monitor_factory=lambda v: Monitor("churn", v), metrics=SidecarMetrics(registry))  # doctest: +SKIP
>>> web.run_app(app, port=8080, **SERVER_OPTIONS)  # forwards request bodies as sent  # doctest: +SKIP

Pieces: :mod:`~driftline.sdk.sidecar.app` (the application and its own routes),
:mod:`~driftline.sdk.sidecar.proxy` (the proxy handler), :mod:`~driftline.sdk.sidecar.config`
(settings), :mod:`~driftline.sdk.sidecar.extraction` (bodies -> features/predictions),
:mod:`~driftline.sdk.sidecar.encoding` (content codings), :mod:`~driftline.sdk.sidecar.oip_binary`
(OIP binary tensors), :mod:`~driftline.sdk.sidecar.oip_server` (OIP v2 metadata and checks of ``serve``),
:mod:`~driftline.sdk.sidecar.routing` (A/B and canary), :mod:`~driftline.sdk.sidecar.shadow` (mirroring),
:mod:`~driftline.sdk.sidecar.hygiene` (auth, rate limits, body limits, access log),
:mod:`~driftline.sdk.sidecar.metrics` (Prometheus), :mod:`~driftline.sdk.sidecar.serve` (model files),
:mod:`~driftline.sdk.sidecar.events` (an exchange -> events: what the proxy hands over, who builds),
:mod:`~driftline.sdk.sidecar.event_worker` / :mod:`~driftline.sdk.sidecar.event_process` (the events
built and exported in a child process, as the commands run it), :mod:`~driftline.sdk.sidecar.bodies`
(the decoded copies extraction reads),
:mod:`~driftline.sdk.sidecar.input_schema` (inputs of a served model), :mod:`~driftline.sdk.sidecar.cli`
(the ``sidecar`` and ``serve`` commands).

Public names are imported on first use: ``import driftline.sdk`` never imports this package, and
importing ``driftline.sdk.sidecar.cli`` (argparse only) does not pull in aiohttp, so
``driftline --help`` works on a light SDK install.
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "ExtractSpec": "driftline.sdk.sidecar.extraction",
    "extract": "driftline.sdk.sidecar.extraction",
    "Router": "driftline.sdk.sidecar.routing",
    "SplitConfig": "driftline.sdk.sidecar.routing",
    "SplitFileWatcher": "driftline.sdk.sidecar.routing",
    "Variant": "driftline.sdk.sidecar.routing",
    "LocalBackend": "driftline.sdk.sidecar.app",
    "LocalReply": "driftline.sdk.sidecar.app",
    "Sidecar": "driftline.sdk.sidecar.app",
    "SidecarKey": "driftline.sdk.sidecar.app",
    "build_app": "driftline.sdk.sidecar.app",
    "SERVER_OPTIONS": "driftline.sdk.sidecar.app",
    "ShadowTarget": "driftline.sdk.sidecar.config",
    "SidecarSettings": "driftline.sdk.sidecar.config",
    "SidecarMetrics": "driftline.sdk.sidecar.metrics",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
