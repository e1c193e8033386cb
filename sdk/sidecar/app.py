"""The sidecar's aiohttp application: reverse proxy + prediction events + shadows + A/B split.

:class:`Sidecar` is the state the handlers share (settings, router, guard, the upstream session,
the shadow mirror, the events sink that turns exchanges into prediction events:
:mod:`driftline.sdk.sidecar.events`); :func:`build_app` wires it into an ``aiohttp.web.Application``.
The request path itself (forwarding, streaming, then the hand-off of events) is
:mod:`driftline.sdk.sidecar.proxy`.

Routes owned by the sidecar: its metrics (``GET /driftline/metrics`` by default, or on a port of
their own: ``SidecarSettings.metrics_path`` / ``metrics_port``), ``GET /healthz``, ``GET /readyz``
and ``GET|PUT /admin/split``. Every other path and method is proxied unchanged, the upstream's own
``/metrics`` included.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Mapping, Protocol

import aiohttp
from aiohttp import web

from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.bodies import Readable
from driftline.sdk.sidecar.events import EventBuilder, EventSink, Exchange, InlineEvents
from driftline.sdk.sidecar.extraction import Row
from driftline.sdk.sidecar.hygiene import (REQ_TOKEN, BodyTooLarge, Guard, RateLimiter, TokenAuth, error_response,
                                           make_expect_handler, read_body_capped, too_large_response)
from driftline.sdk.monitor import Monitor
from driftline.sdk.sidecar.oip_binary import HEADER_LENGTH
from driftline.sdk.sidecar.proxy import proxy_request
from driftline.sdk.sidecar.routing import Router, SplitConfig, SplitFileWatcher
from driftline.sdk.sidecar.shadow import ShadowMirror
from driftline.sdk.sidecar.config import ShadowTarget, SidecarSettings
from driftline.sdk.sidecar.metrics import SidecarMetrics

logger = logging.getLogger("driftline.sidecar")

_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

#: Options of the aiohttp server (``web.run_app`` / ``web.AppRunner``) that runs :func:`build_app`.
#: ``auto_decompress`` off: the proxy must forward a compressed request body as the client sent it
#: (aiohttp would otherwise inflate it and leave ``Content-Encoding: gzip`` on plain bytes);
#: extraction decodes its own copy (:mod:`driftline.sdk.sidecar.encoding`).
SERVER_OPTIONS: Mapping[str, Any] = {"auto_decompress": False}


@dataclass(frozen=True)
class LocalReply:
    """What an in-process model (``driftline serve``) answered, with its rows already extracted."""

    response: web.Response
    rows: list[Row] | None
    error: str | None
    model_s: float


class LocalBackend(Protocol):
    """An in-process model behind the ``local:`` upstream (see :mod:`driftline.sdk.sidecar.serve`)."""

    async def handle(self, request: web.Request, body: Readable) -> LocalReply: ...

    def ready(self) -> bool: ...

    def add_routes(self, app: web.Application) -> None: ...


SidecarKey = web.AppKey("driftline_sidecar", object)


class Sidecar:
    """State shared by the handlers of one application."""

    def __init__(self, settings: SidecarSettings, *, events: EventSink, metrics: SidecarMetrics, router: Router,
                 clock: Callable[[], float] = time.monotonic, local: LocalBackend | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.router = router
        self.local = local
        self.events = events
        limiter = (RateLimiter(settings.rate_limit_rps, settings.burst, clock=clock)
                   if settings.rate_limit_rps else None)
        self.guard = Guard(TokenAuth(settings.tokens), TokenAuth(settings.admin), limiter)
        self.session: aiohttp.ClientSession | None = None
        self.shadow: ShadowMirror | None = None
        self.watcher: SplitFileWatcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.shutting_down = False
        self.timeout_s = settings.timeout_s

    def should_log(self, method: str, path: str) -> bool:
        s = self.settings
        if method not in s.log_methods:
            return False
        return not s.log_paths or any(fnmatch.fnmatchcase(path, p) for p in s.log_paths)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, app: web.Application) -> None:
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s, sock_read=s.timeout_s)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.upstream_connections, ttl_dns_cache=300),
            timeout=timeout, auto_decompress=False, skip_auto_headers=_SKIP_AUTO)
        if s.shadows:
            self.shadow = ShadowMirror(s.shadows, self.session, metrics=self.metrics,
                                       sample=s.shadow_sample,
                                       max_concurrency=s.shadow_concurrency, timeout_s=s.shadow_timeout_s,
                                       capture_bytes=s.capture_bytes)
        if s.split_file:
            self.watcher = SplitFileWatcher(s.split_file, self.router, interval_s=s.split_poll_s,
                                            on_error=lambda _exc: self.metrics.split_reload_errors.inc())
            self._watch_task = asyncio.get_running_loop().create_task(self.watcher.run())

    async def stop(self, app: web.Application) -> None:
        self.shutting_down = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.shadow is not None:
            await self.shadow.close(timeout_s=min(5.0, self.settings.shadow_timeout_s))
        if self.session is not None:
            await self.session.close()

    # -- events ------------------------------------------------------------------------------
    def mirror(self, request: web.Request, body: bytes, headers: Mapping[str, str], request_id: str,
               log: bool) -> None:
        shadow = self.shadow
        if shadow is None:
            return
        t_ns = time.time_ns()
        encoding, header_len = request.headers.get("Content-Encoding"), request.headers.get(HEADER_LENGTH)

        def on_result(target: ShadowTarget, status: int | None, data: bytes | None,
                      resp_headers: Mapping[str, str], latency_s: float, error: str | None) -> None:
            if not log:
                return
            ok = status is not None and status < 400
            self.events.submit(Exchange(
                target.variant, target.version, request_id, t_ns, latency_s * 1000.0, error, status, body,
                encoding, header_len, data if ok else None, resp_headers.get("Content-Encoding") if ok else None,
                resp_headers.get(HEADER_LENGTH) if ok else None))

        shadow.mirror(request.method, request.path_qs, headers, body, on_result)


def _serve_metrics(metrics_app: web.Application, host: str,
                   port: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """Serve ``metrics_app`` on its own port for as long as the main application runs."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        app[MetricsSiteKey] = site
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx


MetricsSiteKey = web.AppKey("driftline_metrics_site", web.TCPSite)


def build_app(settings: SidecarSettings, *, metrics: SidecarMetrics,
              monitor_factory: Callable[[str], Monitor] | None = None, events: EventSink | None = None,
              split: SplitConfig | None = None, local: LocalBackend | None = None,
              clock: Callable[[], float] = time.monotonic, router: Router | None = None) -> web.Application:
    """The sidecar as an ``aiohttp.web.Application`` (run it with ``web.run_app`` or an AppRunner).

    Events go to ``events`` (``driftline sidecar`` passes an
    :class:`~driftline.sdk.sidecar.event_worker.EventWorker`: a child process builds and exports
    them), or are built on the event loop into the Monitors ``monitor_factory(version)`` returns
    (called once per version; :class:`~driftline.sdk.sidecar.events.InlineEvents`). Pass one of the
    two. ``split`` defaults to the split file, else all traffic to ``settings.upstream``.
    """
    if (monitor_factory is None) == (events is None):
        raise ConfigError("build_app needs either monitor_factory= or events=, not both")
    if events is None:
        assert monitor_factory is not None
        events = InlineEvents(EventBuilder(settings.model, settings.extract, monitor_factory, tags=settings.tags,
                                           default_version=settings.version,
                                           max_body_bytes=settings.max_body_bytes,
                                           capture_bytes=settings.capture_bytes))
    if split is None:
        split = SplitConfig.load(settings.split_file) if settings.split_file else SplitConfig.single(
            settings.upstream)
    if any(v.upstream == "local:" for v in split.variants) and local is None:
        raise ConfigError("the 'local:' upstream needs an in-process model (driftline serve)")
    router = router or Router(split)
    sc = Sidecar(settings, events=events, metrics=metrics, router=router, clock=clock, local=local)
    metrics.watch_exporters(events.exporter_stats)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SidecarKey] = sc
    app.on_startup.append(sc.start)
    app.on_cleanup.append(sc.stop)

    async def start_events(app: web.Application) -> None:
        await events.start()

    async def stop_events(app: web.Application) -> None:
        await events.stop()  # after sc.stop: the shadows' last answers are handed over first

    app.on_startup.append(start_events)
    app.on_cleanup.append(stop_events)

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.generate(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = not sc.shutting_down and (local is None or local.ready())
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def get_split(request: web.Request) -> web.Response:
        denied = sc.guard.check(request, admin=True)
        return denied or web.json_response({**sc.router.split.to_dict(), "generation": sc.router.generation})

    async def put_split(request: web.Request) -> web.Response:
        denied = sc.guard.check(request, admin=True)
        if denied is not None:
            return denied
        try:
            data = json.loads(await read_body_capped(request, 64 * 1024))
            if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
                raise ConfigError('expected {"weights": {"variant": number, ...}}')
            new = sc.router.set_weights(data["weights"])
        except BodyTooLarge:
            return too_large_response(64 * 1024)
        except (ValueError, ConfigError) as exc:
            return error_response(400, "invalid_split", str(exc))
        logger.info("driftline sidecar: weights set through the admin endpoint (token %s): %s",
                    request.get(REQ_TOKEN, "-"), ", ".join(f"{v.name}={v.weight:g}" for v in new.variants))
        return web.json_response({**new.to_dict(), "generation": sc.router.generation})

    async def proxy(request: web.Request) -> web.StreamResponse:
        return await proxy_request(sc, request)

    if settings.metrics_port is None:
        app.router.add_get(settings.metrics_path, metrics_handler)
    else:
        metrics_app = web.Application()
        metrics_app.router.add_get(settings.metrics_path, metrics_handler)
        app.cleanup_ctx.append(_serve_metrics(metrics_app, settings.host, settings.metrics_port))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/admin/split", get_split)
    app.router.add_put("/admin/split", put_split)
    if local is not None:
        local.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", proxy, expect_handler=make_expect_handler(settings.max_body_bytes))
    return app
