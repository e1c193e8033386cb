"""Fire-and-forget mirroring of requests to shadow upstreams.

The caller never waits for a shadow: :meth:`ShadowMirror.mirror` is a plain function that starts
tasks and returns at once (the sidecar calls it after the caller's response is written). Each
shadow has its own bound on requests in flight; a shadow at its bound is skipped (counted
``skipped_busy``), never queued, so a slow shadow cannot grow memory or hold up the primary.
Sampling keeps a fraction of requests. Failures are counted by reason and logged as events with
``status="error"``; nothing propagates to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Callable, Mapping

import aiohttp

from driftline.sdk.sidecar.config import ShadowTarget
from driftline.sdk.sidecar.metrics import SidecarMetrics

logger = logging.getLogger("driftline.sidecar")

ShadowResult = Callable[[ShadowTarget, "int | None", "bytes | None", Mapping[str, str], float, "str | None"], None]


class ShadowMirror:
    """Mirror requests to ``targets``.

    ``mirror(..., on_result)`` calls ``on_result(target, status, body, headers, latency_s, error)`` on
    the event loop when a shadow answers or fails (``status`` None on a transport error); the sidecar
    logs it as an event with the shadow's variant and the primary's request id.
    """

    def __init__(self, targets: tuple[ShadowTarget, ...], session: aiohttp.ClientSession, *,
                 metrics: SidecarMetrics, sample: float = 1.0,
                 max_concurrency: int = 64, timeout_s: float = 10.0, capture_bytes: int = 1024 * 1024,
                 rng: random.Random | None = None) -> None:
        self.targets = targets
        self.session = session
        self.metrics = metrics
        self.sample = sample
        self.max_concurrency = max_concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.capture_bytes = capture_bytes
        self._rng = rng or random.Random()
        self._in_flight = {t.name: 0 for t in targets}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def mirror(self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes,
               on_result: ShadowResult | None = None) -> int:
        """Start the shadow calls for one request; returns how many were started. Never raises."""
        if not self.targets or self._closed:
            return 0
        try:
            if self.sample < 1.0 and self._rng.random() >= self.sample:
                for t in self.targets:
                    self.metrics.shadow_requests.labels(t.name, "skipped_sample").inc()
                return 0
            started = 0
            for t in self.targets:
                if self._in_flight[t.name] >= self.max_concurrency:
                    self.metrics.shadow_requests.labels(t.name, "skipped_busy").inc()
                    continue
                self._in_flight[t.name] += 1
                task = asyncio.get_running_loop().create_task(self._call(t, method, path_qs, headers, body,
                                                                                 on_result))
                # Keep a strong reference: the loop holds tasks weakly and could collect one mid-flight.
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
            return started
        except Exception:  # noqa: BLE001 - mirroring must never break the caller
            logger.warning("driftline sidecar: could not start shadow calls", exc_info=True)
            return 0

    async def _call(self, target: ShadowTarget, method: str, path_qs: str, headers: Mapping[str, str],
                    body: bytes, on_result: ShadowResult | None) -> None:
        start = time.perf_counter()
        status: int | None = None
        data: bytes | None = None
        resp_headers: Mapping[str, str] = {}
        error: str | None = None
        reason: str | None = None
        try:
            async with self.session.request(method, target.url + path_qs, headers=headers, data=body,
                                            timeout=self.timeout, allow_redirects=False) as resp:
                status = resp.status
                resp_headers = resp.headers
                data = await resp.content.read(self.capture_bytes)
            if status >= 500:
                reason, error = f"http_{status // 100}xx", f"shadow answered HTTP {status}"
            elif status >= 400:
                reason, error = f"http_{status // 100}xx", f"shadow answered HTTP {status}"
        except asyncio.TimeoutError:
            reason, error = "timeout", f"shadow timed out after {self.timeout.total:g} s"
        except aiohttp.ClientConnectorError as exc:
            reason, error = "connect", f"shadow connection failed: {exc.os_error or exc}"
        except aiohttp.ClientError as exc:
            reason, error = "transport", f"shadow transport error: {type(exc).__name__}"
        except asyncio.CancelledError:
            self._in_flight[target.name] -= 1
            self.metrics.shadow_errors.labels(target.name, "cancelled").inc()
            raise
        except Exception as exc:  # noqa: BLE001
            reason, error = "internal", f"shadow call failed: {type(exc).__name__}"
        self._in_flight[target.name] -= 1
        latency_s = time.perf_counter() - start
        if reason is not None:
            self.metrics.shadow_errors.labels(target.name, reason).inc()
            self.metrics.shadow_requests.labels(target.name, "error").inc()
        else:
            self.metrics.shadow_requests.labels(target.name, "ok").inc()
        if on_result is None:
            return
        try:
            on_result(target, status, data, resp_headers, latency_s, error)
        except Exception:  # noqa: BLE001
            logger.warning("driftline sidecar: logging a shadow result failed", exc_info=True)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop mirroring; give calls in flight ``timeout_s`` to finish, then cancel them."""
        self._closed = True
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
