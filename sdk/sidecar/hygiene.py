"""Serving hygiene for the sidecar and ``driftline serve``: auth, rate limits, body limits,
clear JSON errors and an access log that never contains payloads.

Only aiohttp-based modules import this one (it imports aiohttp).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from driftline.sdk.errors import ConfigError

access_logger = logging.getLogger("driftline.sidecar.access")

# Per-request storage keys (typed RequestKey where aiohttp has it, 3.12+; plain strings before).
_RequestKey = getattr(web, "RequestKey", None)
REQ_ID: Any = _RequestKey("dl_request_id", str) if _RequestKey else "dl_request_id"
REQ_VARIANT: Any = _RequestKey("dl_variant", str) if _RequestKey else "dl_variant"
REQ_TOKEN: Any = _RequestKey("dl_token", str) if _RequestKey else "dl_token"


def error_response(status: int, code: str, message: str, *, request_id: str | None = None,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    """A JSON error body: ``{"error": code, "message": ..., "request_id": ...}``."""
    body: dict[str, Any] = {"error": code, "message": message}
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


# -- bearer tokens --------------------------------------------------------------------------------
def load_tokens(*, env: Mapping[str, str], env_var: str | None, path: str | Path | None) -> dict[str, str]:
    """Tokens as ``name -> secret`` from an env variable and/or a file.

    Format (both): entries separated by commas or new lines, each ``name:secret`` or a bare secret
    (named ``token1``, ``token2``...). Names appear in the access log and metrics; secrets never do.
    Tokens never come from the command line, where ``ps`` and shell history would show them.
    """
    entries: list[str] = []
    if env_var and env.get(env_var):
        entries += env[env_var].replace("\n", ",").split(",")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
        entries += [line for line in text.replace(",", "\n").splitlines() if not line.startswith("#")]
    tokens: dict[str, str] = {}
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep:
            name, secret = f"token{len(tokens) + 1}", entry
        name, secret = name.strip(), secret.strip()
        if len(secret) < 16:
            raise ConfigError(f"token {name!r} is shorter than 16 characters; use a random secret "
                              "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if name in tokens:
            raise ConfigError(f"token name {name!r} appears twice")
        tokens[name] = secret
    return tokens


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` against several tokens in constant time.

    Every configured token is compared (no early exit), each with ``hmac.compare_digest``, so the
    time taken says nothing about which token or how much of it matched.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(name, secret.encode()) for name, secret in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> str | None:
        """The matching token's name, or None."""
        if not authorization or not authorization[:7].lower() == "bearer ":
            return None
        given = authorization[7:].strip().encode()
        found: str | None = None
        for name, secret in self._tokens:
            if hmac.compare_digest(given, secret) and found is None:
                found = name
        return found


# -- rate limits -------------------------------------------------------------------------------
@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """A token bucket per key (token name, or client address when auth is off).

    ``rate_per_s`` refills, ``burst`` is the bucket size. ``clock`` is injected (monotonic
    seconds) so tests move time instead of sleeping. At most ``max_keys`` buckets are kept (least
    recently used evicted), so unauthenticated traffic from many addresses cannot grow memory.
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        if not rate_per_s > 0:
            raise ConfigError("rate limit must be > 0 requests per second")
        if burst < 1:
            raise ConfigError("rate limit burst must be >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, key: str) -> float:
        """0.0 when allowed; otherwise seconds until a request would be allowed."""
        now = self._clock()
        b = self._buckets.get(key)
        if b is None:
            b = _Bucket(float(self.burst), now)
            self._buckets[key] = b
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate_per_s)
            b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate_per_s


def retry_after_header(wait_s: float) -> dict[str, str]:
    # Retry-After takes whole seconds; round up so a client that obeys it is let through.
    return {"Retry-After": str(max(1, math.ceil(wait_s)))}


# -- body limit --------------------------------------------------------------------------------
# Internal control flow, not in the error tree (sdk/errors.py): raised by read_body_capped and
# always caught by the handler that called it, which answers 413; it never reaches users.
class BodyTooLarge(Exception):
    """The request body passed the configured limit (answered with 413)."""


def declared_too_large(request: web.BaseRequest, limit_bytes: int) -> bool:
    length = request.content_length
    return length is not None and length > limit_bytes


async def read_body_capped(request: web.BaseRequest, limit_bytes: int) -> bytes:
    """Read the body, stopping as soon as it passes ``limit_bytes`` (chunked bodies included)."""
    if declared_too_large(request, limit_bytes):
        raise BodyTooLarge()
    if not request.body_exists:
        return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit_bytes:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def too_large_response(limit_bytes: int, request_id: str | None = None) -> web.Response:
    # Connection: close -- the rest of the body is never read, so the connection cannot be reused.
    return error_response(413, "body_too_large",
                          f"request body is larger than the limit of {limit_bytes} bytes",
                          request_id=request_id, headers={"Connection": "close"}, limit_bytes=limit_bytes)


def make_expect_handler(limit_bytes: int) -> Callable[[web.Request], Any]:
    """For ``Expect: 100-continue``: refuse an oversized declared body before the client sends it."""

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        if declared_too_large(request, limit_bytes):
            return too_large_response(limit_bytes)
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    return expect_handler


# -- access log ----------------------------------------------------------------------------------
class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path (no query string: it may carry personal data), status,
    time, response size, variant, token name and request id. Never bodies, never headers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            self.logger.info(
                "%s %s %d %.2fms bytes=%d variant=%s token=%s request_id=%s remote=%s",
                request.method, request.path, response.status, time * 1000.0, response.body_length,
                request.get(REQ_VARIANT, "-"), request.get(REQ_TOKEN, "-"),
                request.get(REQ_ID, "-"), request.remote or "-",
            )
        except Exception:  # noqa: BLE001 - logging must never break a response
            pass

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


@dataclass(frozen=True)
class Guard:
    """Auth + rate limit in front of a handler; ``check`` returns an error response or None."""

    auth: TokenAuth
    admin_auth: TokenAuth
    limiter: RateLimiter | None

    def check(self, request: web.Request, *, admin: bool = False) -> web.Response | None:
        rid = request.get(REQ_ID)
        auth = self.admin_auth if admin else self.auth
        key = request.remote or "-"
        if auth.enabled:
            name = auth.check(request.headers.get("Authorization"))
            if name is None:
                return error_response(401, "unauthorized", "missing or invalid bearer token",
                                      request_id=rid, headers={"WWW-Authenticate": 'Bearer realm="driftline"'})
            request[REQ_TOKEN] = name
            key = "token:" + name
        if self.limiter is not None and not admin:
            wait_s = self.limiter.acquire(key)
            if wait_s > 0:
                return error_response(429, "rate_limited",
                                      f"rate limit of {self.limiter.rate_per_s:g} requests/s exceeded",
                                      request_id=rid, headers=retry_after_header(wait_s),
                                      retry_after_s=round(wait_s, 3))
        return None
