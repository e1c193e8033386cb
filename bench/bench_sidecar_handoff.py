"""What the event worker's hand-off costs, in CPU time (which, unlike p99, hardly moves with load).

    python bench/bench_sidecar_handoff.py [--rate 500] [--seconds 6] [--delays-ms 50,20,10,5] [--bytes-kib 1024,256]

For each hand-off delay, an :class:`EventWorker` (the one ``driftline sidecar`` runs, its child
exporting to memory) is fed the bench request's exchange at a fixed rate on an asyncio loop, and
the script reports: the loop thread's CPU per request for ``submit`` and for the hand-offs (pickle,
pipe write, the child's wake-up), the child's CPU per exchange, and the child's burst -- its CPU per
hand-off, the time a request may wait behind it when both want one CPU. Ratios are against the
first delay given (the default, 50 ms). Also: a full pipe must not stall the loop -- the child is
stopped (SIGSTOP) and 4 MiB of hand-offs are written at it; the longest write is reported. On
uvloop when installed, as ``driftline sidecar`` runs.

Large bodies: 256 KiB requests handed over with each ``handoff_bytes`` given -- the loop's CPU per
MiB handed over and its longest single hand-off (a stall every request in flight waits out),
ratios against the first size given (the old default, 1 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from driftline.sdk import InMemoryExporter, SdkSettings
from driftline.sdk.sidecar.config import SidecarSettings
from driftline.sdk.sidecar.event_process import WorkerConfig
from driftline.sdk.sidecar.event_worker import EventWorker
from driftline.sdk.sidecar.events import Exchange
from driftline.sdk.sidecar.cli import use_uvloop
from driftline.sdk.sidecar.metrics import SidecarMetrics

BODY = b'{"age": 41, "income": 2.5, "plan": "pro", "tenure_months": 17}'
RESPONSE = b'{"prediction":0.5}'


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(delay_s: float, rate: float, seconds: float) -> dict[str, float]:
    settings = SidecarSettings(upstream="http://127.0.0.1:1", model="bench", version="1", port=1)
    worker = EventWorker(WorkerConfig.from_settings(settings, SdkSettings(), exporter_factory=InMemoryExporter),
                         SidecarMetrics(CollectorRegistry()), handoff_delay_s=delay_s)
    await worker.start()
    try:
        assert worker.pid is not None
        await asyncio.sleep(1.0)  # the child's imports
        child0 = process_cpu_s(worker.pid)
        flushes: list[float] = []
        flush = worker._flush

        def timed_flush() -> None:
            t = time.thread_time()
            flush()
            flushes.append(time.thread_time() - t)

        worker._flush = timed_flush  # type: ignore[method-assign]
        n, submit_s = int(rate * seconds), 0.0
        t0 = time.perf_counter()
        for i in range(n):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            x = Exchange("primary", "1", f"0192f0c3-aaaa-7bbb-8ccc-{i:012d}", time.time_ns(), 1.0, None, 200, BODY,
                         None, None, RESPONSE, None, None)
            t = time.thread_time()
            worker.submit(x)
            submit_s += time.thread_time() - t
        await asyncio.sleep(1.0)
        child_s = process_cpu_s(worker.pid) - child0
        stall_ms, buffered = await full_pipe(worker)
    finally:
        await worker.stop()
    return {"stall_ms": stall_ms, "buffered": buffered, "submit_us": submit_s / n * 1e6, "handoffs": len(flushes),
            "handoff_us": statistics.median(flushes) * 1e6, "handoff_per_req_us": sum(flushes) / n * 1e6,
            "child_us": child_s / n * 1e6, "burst_ms": child_s / max(1, len(flushes)) * 1e3}


async def full_pipe(worker: EventWorker) -> tuple[float, int]:
    """Hand 4 MiB (16 x 256 KiB bodies) to a stopped child: the longest hand-off, and what was buffered."""
    pid = worker.pid
    assert pid is not None and worker._proc is not None and worker._proc.stdin is not None
    os.kill(pid, signal.SIGSTOP)
    longest, flush = 0.0, worker._flush

    def timed() -> None:
        nonlocal longest
        t = time.perf_counter()
        flush()
        longest = max(longest, time.perf_counter() - t)

    worker._flush = timed  # type: ignore[method-assign]
    try:
        for i in range(16):
            worker.submit(Exchange("primary", "1", f"big{i}", 0, 1.0, None, 200, b"x" * (256 * 1024), None, None,
                                   RESPONSE, None, None))
            worker._flush()
        buffered = worker._proc.stdin.transport.get_write_buffer_size()
    finally:
        os.kill(pid, signal.SIGCONT)
    return longest * 1e3, buffered


async def large_bodies(handoff_bytes: int, rounds: int = 30) -> tuple[float, float]:
    """Loop CPU per MiB handed over and the median over rounds of the longest hand-off, both ms."""
    settings = SidecarSettings(upstream="http://127.0.0.1:1", model="bench", version="1", port=1)
    worker = EventWorker(WorkerConfig.from_settings(settings, SdkSettings(), exporter_factory=InMemoryExporter),
                         SidecarMetrics(CollectorRegistry()), handoff_bytes=handoff_bytes)
    await worker.start()
    total, longest = 0.0, []
    try:
        await asyncio.sleep(1.0)
        for r in range(rounds):
            costs = []
            # 1 MiB of bodies per round, each its own object (as requests' bodies are; one shared
            # object would be pickled once per batch)
            xs = [Exchange("primary", "1", f"big{r}.{i}", 0, 1.0, None, 200,
                           b'{"a": "%d' % i + b"x" * (256 * 1024) + b'"}', None, None, RESPONSE, None, None)
                  for i in range(4)]
            for x in xs:
                t = time.thread_time()
                worker.submit(x)
                costs.append(time.thread_time() - t)
            total += sum(costs)
            longest.append(max(costs))
            await asyncio.sleep(0.1)  # the child reads it all
    finally:
        await worker.stop()
    return total / rounds * 1e3, statistics.median(longest) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--delays-ms", default="50,20,10,5")
    ap.add_argument("--bytes-kib", default="1024,256", help="handoff_bytes to compare with 256 KiB bodies")
    args = ap.parse_args()
    print(f"uvloop {use_uvloop()}; load average {os.getloadavg()[0]:.2f} at start; {args.rate:.0f} exchanges/s for {args.seconds:g} s each")
    base: dict[str, float] | None = None
    for ms in (float(d) for d in args.delays_ms.split(",")):
        r = asyncio.run(one(ms / 1000.0, args.rate, args.seconds))
        base = base or r
        print(f"hand-off {ms:4g} ms: loop CPU per request: submit "
              f"{r['submit_us']:.1f} us + hand-offs {r['handoff_per_req_us']:.1f} us "
              f"({r['handoffs']:.0f} of median {r['handoff_us']:.0f} us); child CPU {r['child_us']:.0f} us/exchange; "
              f"child burst {r['burst_ms']:.2f} ms ({r['burst_ms'] / base['burst_ms']:.2f}x), loop hand-off CPU "
              f"{r['handoff_per_req_us'] / base['handoff_per_req_us']:.2f}x; 4 MiB into a stopped child: longest "
              f"hand-off {r['stall_ms']:.1f} ms, {r['buffered'] / 2**20:.1f} MiB left in the transport's buffer")
    first: tuple[float, float] | None = None
    for kib in (int(k) for k in args.bytes_kib.split(",")):
        cpu_ms, longest_ms = asyncio.run(large_bodies(kib * 1024))
        first = first or (cpu_ms, longest_ms)
        print(f"256 KiB bodies, hand-off at {kib} KiB: loop CPU {cpu_ms:.2f} ms per MiB ({cpu_ms / first[0]:.2f}x), "
              f"longest hand-off {longest_ms:.2f} ms ({longest_ms / first[1]:.2f}x)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
