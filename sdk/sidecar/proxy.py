"""The sidecar's proxy handler: one request forwarded to its variant's upstream (or the in-process
model of ``driftline serve``) and the answer written back, *then* turned into prediction events.

Request path, in order: request id -> auth -> rate limit -> body read (capped) -> variant choice ->
upstream call (timeout) -> response written to the caller -> *then* the exchange handed to the
events sink (:class:`~driftline.sdk.sidecar.events.Exchange`: raw bodies and metadata; extraction
and events are built elsewhere, by default in a worker process) and shadow mirroring
(:meth:`Sidecar.mirror <driftline.sdk.sidecar.app.Sidecar.mirror>`). Everything after the response
is written costs the caller nothing, and nothing in it can fail the request: a sink's ``submit``
never blocks or raises. Streamed (chunked / SSE) answers pass through chunk by chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from driftline.sdk.ids import uuid7
from driftline.sdk.sidecar.bodies import Readable, readable, sticky_value
from driftline.sdk.sidecar.events import Exchange
from driftline.sdk.sidecar.hygiene import (REQ_ID, REQ_VARIANT, BodyTooLarge, error_response, read_body_capped,
                                           too_large_response)
from driftline.sdk.sidecar.oip_binary import HEADER_LENGTH
from driftline.sdk.sidecar.routing import Variant

if TYPE_CHECKING:  # app.py imports this module for its catch-all route
    from driftline.sdk.sidecar.app import Sidecar

# RFC 9110 hop-by-hop headers, plus those aiohttp recomputes for the new message.
_HOP = frozenset(h.lower() for h in ("Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                                     "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
                                     "Host", "Expect"))


def forward_headers(headers: CIMultiDictProxy[str], *, strip_auth: bool, request_id: str,
                    remote: str | None) -> CIMultiDict[str]:
    """Request headers for the upstream: hop-by-hop headers dropped, a request id and X-Forwarded-For added."""
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


_NO_HEADERS: Mapping[str, str] = {}


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


async def proxy_request(sc: Sidecar, request: web.Request) -> web.StreamResponse:
    """Answer one proxied request (every path the sidecar does not own itself)."""
    t0 = time.perf_counter()
    t_ns = time.time_ns()  # the events' timestamp: when the request arrived
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
    decoded: Readable | None = None
    if key is None and split.sticky_field and body:
        decoded = readable(body, request.headers, sc.settings.max_body_bytes)
        key = sticky_value(decoded, split.sticky_field)
    variant = sc.router.choose(key)
    request[REQ_VARIANT] = variant.name
    log = sc.should_log(request.method, request.path)
    headers = forward_headers(request.headers, strip_auth=sc.guard.auth.enabled, request_id=rid,
                              remote=request.remote)
    if variant.upstream == "local:" and sc.local is not None:
        return await _local(sc, request, body, variant, rid, log, headers, t0, t_ns)
    resp_headers: CIMultiDictProxy[str] | None = None
    streamed = False

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
            resp_headers = resp.headers
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
        # Handed over as they were forwarded and answered; extraction decodes its own copies later.
        ok = error is None and status < 400
        if error is None and status >= 400:
            error = f"upstream answered HTTP {status}"
        rh = resp_headers if ok and resp_headers is not None else _NO_HEADERS
        sc.events.submit(Exchange(
            variant.event_variant, variant.version, rid, t_ns, upstream_s * 1000.0, error, status, body,
            request.headers.get("Content-Encoding"), request.headers.get(HEADER_LENGTH),
            data if ok and not streamed else None, rh.get("Content-Encoding"), rh.get(HEADER_LENGTH),
            ok and streamed))
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
                 headers: Mapping[str, str], t0: float, t_ns: int) -> web.StreamResponse:
    assert sc.local is not None
    t_up = time.perf_counter()
    try:
        async with asyncio.timeout(sc.timeout_s):
            # The in-process model reads the decoded body, as a server with auto_decompress would.
            reply = await sc.local.handle(request, readable(body, request.headers, sc.settings.max_body_bytes))
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
        sc.events.submit(Exchange(
            variant.event_variant, variant.version, rid, t_ns, model_s * 1000.0,
            error or (None if ok else f"model answered HTTP {out.status}"), out.status,
            None, None, None, None, None, None, rows=rows))
    sc.mirror(request, body, headers, rid, log)
    return out
