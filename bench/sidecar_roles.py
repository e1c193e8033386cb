"""The processes ``bench_sidecar.py`` starts: upstream, sidecar and load generator, one role each.

Run as ``python bench/sidecar_roles.py --role upstream|sidecar|loadgen|interleaved ...`` by
``bench_sidecar.py`` (``interleaved``: one load generator for every target, taking turns in blocks).
A sidecar given ``--stats-port`` also answers ``GET /`` on that port with what happened on its event
loop since the previous call -- garbage collections (count and pause per generation, the longest
pause) and the loop's lag (a 5 ms timer's lateness: p50, p99, max) -- so the bench can tell, round
by round, what events on change in the proxy process itself, apart from the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import time
from pathlib import Path
from typing import Any

BODY = b'{"age": 41, "income": 2.5, "plan": "pro", "tenure_months": 17}'
RESPONSE = b'{"prediction":0.5}'
LAG_TICK_S = 0.005


def maybe_uvloop(enabled: bool = True) -> bool:
    if not enabled:
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def role_upstream(port: int) -> None:
    maybe_uvloop()
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(RESPONSE)
            + RESPONSE)
    cl_re = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                m = cl_re.search(self.buf, 0, end + 2)
                need = end + 4 + (int(m.group(1)) if m else 0)
                if len(self.buf) < need:
                    return
                self.buf = self.buf[need:]
                self.t.write(resp)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


class LoopStats:
    """GC pauses and event-loop lag of this process, read and reset by the stats port."""

    def __init__(self) -> None:
        self._gc_t0 = 0.0
        self.reset()
        gc.callbacks.append(self._on_gc)

    def reset(self) -> None:
        self.gc_n = [0, 0, 0]
        self.gc_s = [0.0, 0.0, 0.0]
        self.gc_max_s = 0.0
        self.lags: list[float] = []

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        d = time.perf_counter() - self._gc_t0
        g = info["generation"]
        self.gc_n[g] += 1
        self.gc_s[g] += d
        self.gc_max_s = max(self.gc_max_s, d)

    async def tick(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock has 1 ms steps. Its timers do too, so a lag
        # below ~1 ms is the timer's rounding; what exceeds it is the loop busy or not scheduled.
        due = time.perf_counter() + LAG_TICK_S
        while True:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            self.lags.append(now - due)
            due = max(due + LAG_TICK_S, now)

    def snapshot(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        out = {"lag_p50_ms": lags[len(lags) // 2] * 1e3, "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3,
               "lag_max_ms": lags[-1] * 1e3, "gc_max_ms": self.gc_max_s * 1e3}
        for g in range(3):
            out[f"gc{g}_n"], out[f"gc{g}_ms"] = self.gc_n[g], self.gc_s[g] * 1e3
        self.reset()
        return out


async def serve_stats(stats: LoopStats, port: int) -> asyncio.AbstractServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = json.dumps(stats.snapshot()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


def role_sidecar(port: int, upstream: str, uvloop_on: bool, events: str, stats_port: int | None,
                 handoff_ms: float | None, worker_sched: str | None = None) -> None:
    """``events``: ``worker`` (the CLI's way: a child process builds and exports them), ``inline`` (on
    the event loop, exporter thread in the same interpreter: the way before the event worker) or ``off``."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from driftline.sdk import InMemoryExporter, Monitor, SdkSettings
    from driftline.sdk.export import ExportResult
    from driftline.sdk.sidecar.app import SERVER_OPTIONS, build_app
    from driftline.sdk.sidecar.config import SidecarSettings
    from driftline.sdk.sidecar.event_process import WorkerConfig
    from driftline.sdk.sidecar.event_worker import EventWorker
    from driftline.sdk.sidecar.metrics import SidecarMetrics

    class NullExporter:
        def export(self, records: object, timeout_s: float) -> ExportResult:
            return ExportResult()

        def shutdown(self, timeout_s: float) -> None:
            return None

    settings = SidecarSettings(upstream=upstream, model="bench", version="1", port=port, access_log=False,
                               log_methods=("POST",) if events != "off" else ())
    metrics = SidecarMetrics(CollectorRegistry())
    if events == "worker":
        # The child's exporter keeps records in memory (discarding needs a class the child can import).
        extra = {} if handoff_ms is None else {"handoff_delay_s": handoff_ms / 1000.0}
        sched = {} if worker_sched is None else {"scheduling": worker_sched}
        worker = EventWorker(WorkerConfig.from_settings(settings, SdkSettings(), exporter_factory=InMemoryExporter,
                                                        **sched), metrics, **extra)
        app = build_app(settings, metrics=metrics, events=worker)
    else:
        app = build_app(settings, metrics=metrics,
                        monitor_factory=lambda v: Monitor("bench", v, exporter=NullExporter(), settings=SdkSettings()))
    if stats_port is not None:
        stats = LoopStats()

        async def start_stats(app: web.Application) -> Any:
            server = await serve_stats(stats, stats_port)
            task = asyncio.get_running_loop().create_task(stats.tick())
            yield
            task.cancel()
            server.close()

        app.cleanup_ctx.append(start_stats)
    maybe_uvloop(uvloop_on)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, **SERVER_OPTIONS)


REQUEST = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
_CL_RE = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


async def _open_pool(port: int, conns: int) -> asyncio.Queue:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    return pool


async def _block(pool: asyncio.Queue, rate: float, seconds: float, lat: list[float]) -> tuple[int, float]:
    """Send at ``rate`` for ``seconds`` on ``pool``'s connections; each latency, from the request's
    *scheduled* send time (or its send, if earlier), appended to ``lat``; returns once every request
    is answered: the number of answers other than 200, and the block's length (its schedule, or
    until its last answer if that came later)."""
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        sent = time.perf_counter()
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        m = _CL_RE.search(head)
        await reader.readexactly(int(m.group(1)) if m else 0)
        if not head.startswith(b"HTTP/1.1 200"):
            errors += 1
        # From the scheduled time when sent late (no coordinated omission), from the send when early
        # (uvloop's timers have millisecond resolution and fire up to ~1 ms before their time).
        lat.append(time.perf_counter() - min(scheduled, sent))
        pool.put_nowait((reader, writer))

    tasks = []
    t0 = time.perf_counter() + 0.002
    for i in range(int(rate * seconds)):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return errors, max(time.perf_counter() - t0, len(tasks) / rate)


def _summary(lat: list[float], errors: int, rps: float) -> dict[str, float]:
    s = sorted(lat)
    return {"n": len(s), "errors": errors, "p50_ms": s[len(s) // 2] * 1000, "p99_ms": s[int(len(s) * 0.99)] * 1000,
            "max_ms": s[-1] * 1000, "achieved_rps": rps}


def role_loadgen(port: int, rate: float, seconds: float, conns: int, latencies: bool = False) -> None:
    maybe_uvloop()

    async def main() -> dict[str, Any]:
        pool = await _open_pool(port, conns)
        lat: list[float] = []
        errors, elapsed = await _block(pool, rate, seconds, lat)
        summary = _summary(lat, errors, len(lat) / elapsed)
        return {"summary": summary, "latencies_ms": [round(x * 1000, 4) for x in lat]} if latencies else summary

    print(json.dumps(asyncio.run(main())))


def cpu_us(pid: int) -> tuple[float, float, float]:
    """A sidecar's CPU time, µs: its event-loop thread, everything else it runs (other threads, such as
    an exporter thread, and child processes, such as the event worker), and the time its loop thread
    waited on a run queue, ready but not running (``/proc/.../schedstat``: what a co-scheduled process,
    the event worker included, costs the loop in delay). CPU time, unlike latency, hardly depends on
    what else the machine runs."""

    def ticks(path: str) -> int:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    loop_ns, wait_ns, _ = (int(x) for x in Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split())
    loop_ticks = ticks(f"/proc/{pid}/task/{pid}/stat")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    other = ticks(f"/proc/{pid}/stat") - loop_ticks + sum(ticks(f"/proc/{c}/stat") for c in children)
    return loop_ns / 1e3, other * tick_us, wait_ns / 1e3


def role_interleaved(ports: list[int], pids: list[int], rate: float, seconds: float, block_s: float, gap_s: float,
                     conns: int, seed: int) -> None:
    """Every port in turn, in blocks of ``block_s`` at ``rate``, until each had ``seconds``: the targets
    share the machine's slow changes (another tenant, a warm-up, the clock) instead of one target
    taking a whole round's worth of them. The order is shuffled anew for every pass over the ports; a
    ``gap_s`` pause after each block lets what a target does after its requests (an event worker's
    last hand-off: within 50 ms) end before the next target's block. Prints per port its summary,
    latencies (ms) and, for a port with a pid (0: none), :func:`cpu_us` summed over its blocks."""
    import random

    maybe_uvloop()

    async def main() -> dict[str, Any]:
        pools = {p: await _open_pool(p, conns) for p in ports}
        for p in ports:  # warm-up, not measured
            await _block(pools[p], rate, 0.5, [])
            await asyncio.sleep(gap_s)
        lats: dict[int, list[float]] = {p: [] for p in ports}
        errors = dict.fromkeys(ports, 0)
        elapsed = dict.fromkeys(ports, 0.0)
        pid = dict(zip(ports, pids))
        cpu = {p: [0.0, 0.0, 0.0] for p in ports}
        rng = random.Random(seed)
        for _ in range(max(1, round(seconds / block_s))):
            order = list(ports)
            rng.shuffle(order)
            for p in order:
                before = cpu_us(pid[p]) if pid[p] else None
                e, t = await _block(pools[p], rate, block_s, lats[p])
                await asyncio.sleep(gap_s)
                if before is not None:  # the gap included: the event worker's last hand-off of the block
                    cpu[p] = [c + a - b for c, a, b in zip(cpu[p], cpu_us(pid[p]), before)]
                errors[p] += e
                elapsed[p] += t
        return {str(p): {"summary": _summary(lats[p], errors[p], len(lats[p]) / elapsed[p]),
                         "latencies_ms": [round(x * 1000, 4) for x in lats[p]], "cpu_us": cpu[p]} for p in ports}

    print(json.dumps(asyncio.run(main())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=("upstream", "sidecar", "loadgen", "interleaved"), required=True)
    ap.add_argument("--port", type=int, help="the role's port (interleaved: --ports)")
    ap.add_argument("--ports", help="interleaved role: comma-separated ports, each one a target")
    ap.add_argument("--pids", help="interleaved role: the targets' pids (0: none), for CPU per block")
    ap.add_argument("--block-s", type=float, default=1.0, help="interleaved role: seconds per block")
    ap.add_argument("--gap-s", type=float, default=0.15, help="interleaved role: pause after each block")
    ap.add_argument("--seed", type=int, default=0, help="interleaved role: the blocks' order")
    ap.add_argument("--upstream")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--events", choices=("worker", "inline", "off"), default="worker")
    ap.add_argument("--stats-port", type=int)
    ap.add_argument("--handoff-ms", type=float, help="sidecar role: the event worker's hand-off delay")
    ap.add_argument("--worker-sched", choices=("batch", "yield", "idle"),
                    help="sidecar role: the event worker's policy")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--latencies", action="store_true", help="loadgen role: also print every latency")
    args = ap.parse_args()
    if args.role == "interleaved":
        ports = [int(p) for p in args.ports.split(",")]
        pids = [int(p) for p in args.pids.split(",")] if args.pids else [0] * len(ports)
        role_interleaved(ports, pids, args.rate, args.seconds, args.block_s, args.gap_s, args.conns, args.seed)
    elif args.role == "upstream":
        role_upstream(args.port)
    elif args.role == "sidecar":
        role_sidecar(args.port, args.upstream, not args.no_uvloop, args.events, args.stats_port, args.handoff_ms,
                     args.worker_sched)
    else:
        role_loadgen(args.port, args.rate, args.seconds, args.conns, args.latencies)


if __name__ == "__main__":
    main()
