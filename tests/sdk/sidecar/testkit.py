"""Real HTTP servers for the sidecar tests: a small model server, slow/failing shadows, a sidecar.

Everything binds 127.0.0.1 on port 0; servers run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from driftline.sdk import InMemoryExporter, Monitor, SdkSettings
from driftline.sdk.sidecar.app import SERVER_OPTIONS, Sidecar, SidecarKey, build_app
from driftline.sdk.sidecar.config import SidecarSettings
from driftline.sdk.sidecar.metrics import SidecarMetrics
from driftline.sdk.sidecar.routing import SplitConfig


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve_app(app: web.Application, **runner_kw: Any) -> AsyncIterator[str]:
    runner_kw.setdefault("lingering_time", 0.5)  # oversized-body tests leave bodies unread
    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def start_sidecar_command(upstream: str, port: int, *args: str,
                                env: dict[str, str]) -> asyncio.subprocess.Process:
    """``driftline sidecar`` as a user runs it (its own process, access log off), output piped."""
    import sys

    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "driftline.cli", "sidecar", "--upstream", upstream, "--port", str(port),
        "--no-access-log", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def wait_ready(session: Any, url: str, proc: asyncio.subprocess.Process, tries: int = 300) -> None:
    """Poll ``url``/readyz until it answers 200; the process must stay alive meanwhile."""
    import aiohttp

    for _ in range(tries):
        try:
            if (await session.get(url + "/readyz")).status == 200:
                return
        except aiohttp.ClientConnectionError:
            assert proc.returncode is None
            await asyncio.sleep(0.05)


def _score(row: Any) -> float:
    if isinstance(row, dict):
        return float(sum(v for v in row.values() if isinstance(v, (int, float)) and not isinstance(v, bool)))
    if isinstance(row, list):
        return float(sum(v for v in row if isinstance(v, (int, float))))
    return 0.0


class ModelServer:
    """A tiny model server: score = sum of numeric inputs. Records what it received."""

    def __init__(self, name: str = "model", offset: float = 0.0) -> None:
        self.name = name
        self.offset = offset
        self.calls: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.hang = asyncio.Event()  # set to make /predict hang until release

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/predict", self.predict)
        app.router.add_post("/v2/models/{name}/infer", self.infer)
        app.router.add_post("/stream", self.stream)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_post("/status/{code}", self.status)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/gzip", self.gzip)
        return app

    async def gzip(self, request: web.Request) -> web.Response:
        body = await request.json()
        resp = web.json_response({"prediction": _score(body)})
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    async def predict(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.calls.append({"path": request.path, "headers": request.headers.copy(), "body": raw})
        if self.hang.is_set():
            await self.release.wait()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": "bad json"}, status=400)
        if isinstance(body, dict) and isinstance(body.get("instances"), list):
            preds = [_score(r) + self.offset for r in body["instances"]]
            return web.json_response({"predictions": preds}, headers={"X-Served-By": self.name})
        return web.json_response({"prediction": _score(body) + self.offset}, headers={"X-Served-By": self.name})

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({"path": request.path, "headers": request.headers.copy(), "body": body})
        t = body["inputs"][0]
        n, k = t["shape"]
        data = t["data"]
        scores = [float(sum(data[i * k:(i + 1) * k])) for i in range(n)]
        return web.json_response({"model_name": request.match_info["name"], "outputs": [
            {"name": "score", "shape": [n], "datatype": "FP64", "data": scores}]})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(b'{"part": 1}\n')
        await self.release.wait()  # the test reads part 1 *before* releasing part 2
        await resp.write(b'{"part": 2}\n')
        await resp.write_eof()
        return resp

    async def status(self, request: web.Request) -> web.Response:
        await request.read()
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}", headers={"X-Upstream": "yes"})

    async def slow(self, request: web.Request) -> web.Response:
        await request.read()
        await self.release.wait()
        return web.json_response({"prediction": 1})


class Sink:
    """InMemoryExporter plus the monitors built on it."""

    def __init__(self) -> None:
        self.exporter = InMemoryExporter()
        self.monitors: list[Monitor] = []

    def factory(self, model: str, settings: SdkSettings | None = None) -> Callable[[str], Monitor]:
        def make(version: str) -> Monitor:
            m = Monitor(model, version, exporter=self.exporter, strict=False,
                        settings=settings or SdkSettings(flush_interval_s=0.01))
            self.monitors.append(m)
            return m

        return make

    async def events(self) -> list[dict[str, Any]]:
        for m in self.monitors:
            await asyncio.to_thread(m.flush, 5.0)
        return self.exporter.events("prediction")

    def close(self) -> None:
        for m in self.monitors:
            m.close(2.0)


@asynccontextmanager
async def sidecar(upstream: str, *, sink: Sink | None = None, split: SplitConfig | None = None,
                  clock: Callable[[], float] | None = None, **overrides: Any) -> AsyncIterator[tuple[str, Sidecar, Sink]]:
    sink = sink or Sink()
    settings = replace(SidecarSettings(upstream=upstream, model="m", version="1", access_log=False), **overrides)
    metrics = SidecarMetrics(CollectorRegistry())
    kw: dict[str, Any] = {"clock": clock} if clock else {}
    app = build_app(settings, monitor_factory=sink.factory("m"), metrics=metrics, split=split, **kw)
    try:
        async with serve_app(app, **SERVER_OPTIONS) as url:
            yield url, app[SidecarKey], sink  # type: ignore[misc]
    finally:
        sink.close()
