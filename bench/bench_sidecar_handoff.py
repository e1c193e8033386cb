"""What the event worker's hand-off costs, in CPU time (which, unlike p99, hardly moves with load).

    python bench/bench_sidecar_handoff.py [--rate 500] [--seconds 6] [--delays-ms 50,20,10,5]

For each hand-off delay, an :class:`EventWorker` (the one ``driftline sidecar`` runs, its child
exporting to memory) is fed the bench request's exchange at a fixed rate on an asyncio loop, and
the script reports: the loop thread's CPU per request for ``submit`` and for the hand-offs (pickle,
pipe write, the child's wake-up), the child's CPU per exchange, and the child's burst -- its CPU per
hand-off, the time a request may wait behind it when both want one CPU. Ratios are against the
first delay given (the old default, 50 ms). Also: the pipe is checked to be non-blocking.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from driftline.sdk import InMemoryExporter, SdkSettings
from driftline.sdk.sidecar.config import SidecarSettings
from driftline.sdk.sidecar.event_process import WorkerConfig
from driftline.sdk.sidecar.event_worker import EventWorker
from driftline.sdk.sidecar.events import Exchange
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
        proc = worker._proc
        assert proc is not None and proc.stdin is not None and worker.pid is not None
        pipe = proc.stdin.transport.get_extra_info("pipe")
        nonblocking = bool(fcntl.fcntl(pipe.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
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
    finally:
        await worker.stop()
    return {"nonblocking": nonblocking, "submit_us": submit_s / n * 1e6, "handoffs": len(flushes),
            "handoff_us": statistics.median(flushes) * 1e6, "handoff_per_req_us": sum(flushes) / n * 1e6,
            "child_us": child_s / n * 1e6, "burst_ms": child_s / max(1, len(flushes)) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--delays-ms", default="50,20,10,5")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at start; {args.rate:.0f} exchanges/s for {args.seconds:g} s each")
    base: dict[str, float] | None = None
    for ms in (float(d) for d in args.delays_ms.split(",")):
        r = asyncio.run(one(ms / 1000.0, args.rate, args.seconds))
        base = base or r
        print(f"hand-off {ms:4g} ms: pipe non-blocking {r['nonblocking']}; loop CPU per request: submit "
              f"{r['submit_us']:.1f} us + hand-offs {r['handoff_per_req_us']:.1f} us "
              f"({r['handoffs']:.0f} of median {r['handoff_us']:.0f} us); child CPU {r['child_us']:.0f} us/exchange; "
              f"child burst {r['burst_ms']:.2f} ms ({r['burst_ms'] / base['burst_ms']:.2f}x), loop hand-off CPU "
              f"{r['handoff_per_req_us'] / base['handoff_per_req_us']:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
