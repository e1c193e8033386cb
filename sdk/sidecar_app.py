"""The sidecar's aiohttp application: reverse proxy + prediction events + shadows + A/B split.

Request path, in order: request id -> auth -> rate limit -> body read (capped) -> variant choice ->
upstream call (timeout) -> response written to the caller -> *then* extraction, events and shadow
mirroring. Everything after the response is written costs the caller nothing, and nothing in it
can fail the request: the SDK's ``Monitor.log`` never blocks or raises.

Routes owned by the sidecar: ``GET /metrics``, ``GET /healthz``, ``GET /readyz`` and
``GET|PUT /admin/split``. Every other path and method is proxied unchanged.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from driftline.sdk.errors import ConfigError
from driftline.sdk.extract import Row, extract, get_path
from driftline.sdk.hygiene import (REQ_ID, REQ_TOKEN, REQ_VARIANT, BodyTooLarge, Guard, RateLimiter, TokenAuth, error_response,
                                   make_expect_handler, read_body_capped, too_large_response)
from driftline.sdk.ids import uuid7
from driftline.sdk.monitor import Monitor
from driftline.sdk.routing import Router, SplitConfig, SplitFileWatcher, Variant
from driftline.sdk.shadow import ShadowMirror
from driftline.sdk.sidecar_config import ShadowTarget, SidecarSettings
from driftline.sdk.sidecar_metrics import SidecarMetrics

logger = logging.getLogger("driftline.sidecar")

# RFC 9110 hop-by-hop headers, plus those aiohttp recomputes for the new message.
_HOP = frozenset(h.lower() for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                                     "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
                                     "Host", "Expect"))
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class LocalReply:
    """What an in-process model (``driftline serve``) answered, with its rows already extracted."""

    response: web.Response
    rows: list[Row] | None
    error: str | None
    model_s: float


class LocalBackend(Protocol):
    """An in-process model behind the ``local:`` upstream (see :mod:`driftline.sdk.serve`)."""

    async def handle(self, request: web.Request, body: bytes) -> LocalReply: ...

    def ready(self) -> bool: ...

    def add_routes(self, app: web.Application) -> None: ...


SidecarKey = web.AppKey("driftline_sidecar", object)


class Sidecar:
    """State shared by the handlers of one application."""

    def __init__(self, settings: SidecarSettings, *, monitor_factory: Callable[[str], Monitor],
                 metrics: SidecarMetrics, router: Router, clock: Callable[[], float] = time.monotonic,
                 local: LocalBackend | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.router = router
        self.local = local
        self._monitor_factory = monitor_factory
        self.monitors: dict[str, Monitor] = {}
        limiter = (RateLimiter(settings.rate_limit_rps, settings.burst, clock=clock)
                   if settings.rate_limit_rps else None)
        self.guard = Guard(TokenAuth(settings.tokens), TokenAuth(settings.admin), limiter)
        self.session: aiohttp.ClientSession | None = None
        self.shadow: ShadowMirror | None = None
        self.watcher: SplitFileWatcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.shutting_down = False
        self.timeout_s = settings.timeout_s

    def monitor(self, version: str | None) -> Monitor:
        v = self.settings.version if version is None else version
        m = self.monitors.get(v)
        if m is None:
            m = self.monitors[v] = self._monitor_factory(v)
        return m

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
    def log_rows(self, rows: list[Row], *, variant: str, version: str | None, request_id: str,
                 latency_ms: float | None, status: str, error: str | None, http_status: int | None) -> None:
        monitor = self.monitor(version)
        tags = dict(self.settings.tags)
        if http_status is not None and not 200 <= http_status < 300:
            tags["http_status"] = str(http_status)
        for features, prediction in rows:
            monitor.log(features, prediction, latency_ms=latency_ms, variant=variant, request_id=request_id,
                        status=status, error=error, tags=tags or None)

    def mirror(self, request: web.Request, body: bytes, headers: Mapping[str, str], request_id: str,
               log: bool) -> None:
        shadow = self.shadow
        if shadow is None:
            return

        def on_result(target: ShadowTarget, status: int | None, data: bytes | None, latency_s: float,
                      error: str | None) -> None:
            if not log:
                return
            ok = status is not None and status < 400
            rows, xerr = extract(body, data if ok else None, self.settings.extract)
            self.log_rows(rows, variant=target.name, version=None, request_id=request_id,
                          latency_ms=latency_s * 1000.0, status="ok" if ok else "error",
                          error=error or xerr, http_status=status)

        shadow.mirror(request.method, request.path_qs, headers, body, on_result)


def forward_headers(headers: CIMultiDictProxy[str], *, strip_auth: bool, request_id: str,
                    remote: str | None) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        lk = k.lower()
        if lk in _HOP or (strip_auth and lk == "authorization"):
            continue
        out.add(k, v)
    if "X-Request-Id" not in out:
        out["X-Request-Id"] = request_id
    if remote:
        prior = out.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
    return out


def _response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in headers.items():
        if k.lower() not in _HOP or k.lower() == "host":
            out.add(k, v)
    return out


def _is_streamed(resp: aiohttp.ClientResponse) -> bool:
    if resp.headers.get("Transfer-Encoding", "").lower().endswith("chunked"):
        return True
    if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
        return True
    return "Content-Length" not in resp.headers and resp.status not in (204, 304) and resp.method != "HEAD"


def _decoded(data: bytes, encoding: str) -> bytes | None:
    """Response bytes for extraction; compressed bodies pass to the caller untouched."""
    enc = encoding.lower().strip()
    if not enc or enc == "identity":
        return data
    try:
        if enc in ("gzip", "x-gzip"):
            return zlib.decompress(data, 16 + zlib.MAX_WBITS)
        if enc == "deflate":
            return zlib.decompress(data)
    except zlib.error:
        return None
    return None


async def _proxy(sc: Sidecar, request: web.Request) -> web.StreamResponse:
    t0 = time.perf_counter()
    rid = request.headers.get("X-Request-Id") or uuid7()
    if len(rid) > 256:
        rid = rid[:256]
    request[REQ_ID] = rid
    denied = sc.guard.check(request)
    if denied is not None:
        sc.metrics.observe_request("none", denied.status, None, time.perf_counter() - t0)
        return denied
    try:
        body = await read_body_capped(request, sc.settings.max_body_bytes)
    except BodyTooLarge:
        sc.metrics.observe_request("none", 413, None, time.perf_counter() - t0)
        return too_large_response(sc.settings.max_body_bytes, rid)
    split = sc.router.split
    key = request.headers.get(split.sticky_header) if split.sticky_header else None
    if key is None and split.sticky_field and body:
        try:
            found = get_path(json.loads(body), split.sticky_field)
            key = None if found is None else str(found)
        except ValueError:
            key = None
    variant = sc.router.choose(key)
    request[REQ_VARIANT] = variant.name
    log = sc.should_log(request.method, request.path)
    headers = forward_headers(request.headers, strip_auth=sc.guard.auth.enabled, request_id=rid,
                              remote=request.remote)
    if variant.upstream == "local:" and sc.local is not None:
        return await _local(sc, request, body, variant, rid, log, headers, t0)

    upstream_s: float | None = None
    status: int
    error: str | None = None
    data: bytes | None = None
    t_up = time.perf_counter()
    resp: aiohttp.ClientResponse | None = None
    assert sc.session is not None
    try:
        async with asyncio.timeout(sc.timeout_s):
            resp = await sc.session.request(request.method, variant.upstream + request.path_qs, headers=headers,
                                            data=body if body else None, allow_redirects=False)
            streamed = _is_streamed(resp)
            if not streamed:
                data = await resp.read()
        if streamed:
            out, data, error = await _stream(sc, request, resp)
        else:
            out = web.Response(status=resp.status, reason=resp.reason, body=data,
                               headers=_response_headers(resp.headers))
        status = resp.status
    except TimeoutError:
        error = f"upstream {variant.name} did not answer within {sc.timeout_s:g} s"
        status, out = 504, error_response(504, "upstream_timeout", error, request_id=rid, variant=variant.name)
    except aiohttp.ClientError as exc:
        error = f"upstream {variant.name} unreachable: {type(exc).__name__}"
        status, out = 502, error_response(502, "upstream_unavailable", error, request_id=rid,
                                          variant=variant.name)
    finally:
        upstream_s = time.perf_counter() - t_up
        if resp is not None:
            resp.release()
    if not out.prepared:
        try:
            await out.prepare(request)
            await out.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            error = error or "client disconnected"
    # -- the caller has its answer; from here on nothing delays it --------------------------------
    sc.metrics.observe_request(variant.name, status, upstream_s, time.perf_counter() - t0 - upstream_s)
    if log:
        ok = error is None and status < 400
        payload = None
        if ok and data is not None and resp is not None:
            payload = _decoded(data, resp.headers.get("Content-Encoding", ""))
        rows, xerr = extract(body, payload, sc.settings.extract)
        if error is None and status >= 400:
            error = f"upstream answered HTTP {status}"
        sc.log_rows(rows, variant=variant.name, version=variant.version, request_id=rid,
                    latency_ms=upstream_s * 1000.0, status="ok" if ok else "error", error=error or xerr,
                    http_status=status)
    sc.mirror(request, body, headers, rid, log)
    return out


async def _stream(sc: Sidecar, request: web.Request,
                  resp: aiohttp.ClientResponse) -> tuple[web.StreamResponse, bytes, str | None]:
    """Pass a streamed (chunked / SSE) response through chunk by chunk, capturing a bounded prefix."""
    out = web.StreamResponse(status=resp.status, reason=resp.reason, headers=_response_headers(resp.headers))
    await out.prepare(request)
    captured = bytearray()
    limit = sc.settings.capture_bytes
    error: str | None = None
    try:
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                break
            if len(captured) < limit:
                captured += chunk[: limit - len(captured)]
            await out.write(chunk)
        await out.write_eof()
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        # Headers are gone already: the only honest signal left is to cut the connection.
        error = f"upstream stream broke: {type(exc).__name__}"
        if request.transport is not None:
            request.transport.close()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        error = "client disconnected during the stream"
    return out, bytes(captured), error


async def _local(sc: Sidecar, request: web.Request, body: bytes, variant: Variant, rid: str, log: bool,
                 headers: Mapping[str, str], t0: float) -> web.StreamResponse:
    assert sc.local is not None
    t_up = time.perf_counter()
    try:
        async with asyncio.timeout(sc.timeout_s):
            reply = await sc.local.handle(request, body)
        out, rows, error, model_s = reply.response, reply.rows, reply.error, reply.model_s
    except TimeoutError:
        error = f"model did not answer within {sc.timeout_s:g} s"
        out, rows, model_s = error_response(504, "model_timeout", error, request_id=rid), None, sc.timeout_s
    await out.prepare(request)
    await out.write_eof()
    overhead = time.perf_counter() - t0 - (time.perf_counter() - t_up)
    sc.metrics.observe_request(variant.name, out.status, model_s, max(0.0, overhead))
    if log and rows is not None:
        ok = out.status < 400 and error is None
        sc.log_rows(rows, variant=variant.name, version=variant.version, request_id=rid,
                    latency_ms=model_s * 1000.0, status="ok" if ok else "error", error=error,
                    http_status=out.status)
    sc.mirror(request, body, headers, rid, log)
    return out


def build_app(settings: SidecarSettings, *, monitor_factory: Callable[[str], Monitor],
              metrics: SidecarMetrics, split: SplitConfig | None = None, local: LocalBackend | None = None,
              clock: Callable[[], float] = time.monotonic, router: Router | None = None) -> web.Application:
    """The sidecar as an ``aiohttp.web.Application`` (run it with ``web.run_app`` or an AppRunner).

    ``monitor_factory(version)`` returns the :class:`Monitor` for a model version (called once per
    version). ``split`` defaults to the split file, else all traffic to ``settings.upstream``.
    """
    if split is None:
        split = SplitConfig.load(settings.split_file) if settings.split_file else SplitConfig.single(
            settings.upstream)
    if any(v.upstream == "local:" for v in split.variants) and local is None:
        raise ConfigError("the 'local:' upstream needs an in-process model (driftline serve)")
    router = router or Router(split)
    sc = Sidecar(settings, monitor_factory=monitor_factory, metrics=metrics, router=router, clock=clock,
                 local=local)
    # Once per Client: the versions' Monitors usually share one, whose counts cover them all.
    metrics.watch_exporters(lambda: [c.stats() for c in {m.client: None for m in list(sc.monitors.values())}])
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SidecarKey] = sc
    app.on_startup.append(sc.start)
    app.on_cleanup.append(sc.stop)

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
        return await _proxy(sc, request)

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/admin/split", get_split)
    app.router.add_put("/admin/split", put_split)
    if local is not None:
        local.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", proxy, expect_handler=make_expect_handler(settings.max_body_bytes))
    return app
