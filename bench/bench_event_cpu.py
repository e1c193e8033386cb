"""CPU time the sidecar's event worker spends per exchange, this code against a baseline install.

    python bench/bench_event_cpu.py [--baseline /path/to/other/venv/bin/python] [--rounds 3]
                                    [--rate 500] [--seconds 6] [--shape flat|v2]

CPU time, unlike p99, hardly depends on what else the machine runs, so it is the figure to compare
on a loaded machine. Two measurements, each run with this interpreter and with ``--baseline``'s
(another checkout's venv: its ``driftline`` is the code under comparison), rounds interleaved and
their order alternating:

* **warm**: the child's loop (``event_process.run``) over an in-memory stream of 4,000 exchanges in
  frames of 25 (500 req/s x 50 ms), CPU per exchange of the whole process -- the code's cost alone;
* **in situ**: an :class:`EventWorker` as ``driftline sidecar`` runs it, parent and child both of
  the install compared, fed ``--rate`` exchanges a second for ``--seconds`` on an asyncio loop: the
  child's CPU per exchange from ``/proc/<child>/task/*/schedstat`` (ns), per thread, and its burst
  (CPU per hand-off); the parent loop's CPU per exchange in ``submit`` and the hand-offs (pickle and
  pipe write). Cold caches after each 50 ms pause make the child's figure ~2x the warm one.

Ratios are this code / baseline. Without ``--baseline`` only this code is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BODIES = {
    "flat": (b'{"age": 41, "income": 2.5, "plan": "pro", "tenure_months": 17}', b'{"prediction":0.5}'),
    "v2": (b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1.5, 2, 3, 4, 5, 6]}]}',
           b'{"model_name": "m", "outputs": [{"name": "y", "shape": [2], "datatype": "FP32", "data": [0.1, 0.9]}]}'),
}


def exchange(i: int, shape: str) -> object:
    from driftline.sdk.sidecar.events import Exchange

    req, resp = BODIES[shape]
    return Exchange("primary", "1", f"0192f0c3-aaaa-7bbb-8ccc-{i:012d}", time.time_ns(), 1.0, None, 200, req, None,
                    None, resp, None, None)


def worker_config() -> object:
    from driftline.sdk import InMemoryExporter, SdkSettings
    from driftline.sdk.sidecar.config import SidecarSettings
    from driftline.sdk.sidecar.event_process import WorkerConfig

    settings = SidecarSettings(upstream="http://127.0.0.1:1", model="bench", version="1", port=1)
    return WorkerConfig.from_settings(settings, SdkSettings(), exporter_factory=InMemoryExporter)


def warm(shape: str, n: int = 4000) -> float:
    """CPU µs per exchange of ``event_process.run`` over in-memory frames (run in the compared install)."""
    from driftline.sdk.sidecar.event_process import encode_frame, run

    stream = io.BytesIO()
    for b in range(0, n, 25):
        stream.write(encode_frame([exchange(b + i, shape) for i in range(25)]))
    stream.seek(0)
    t = time.process_time()
    run(worker_config(), stream, io.BytesIO())  # type: ignore[arg-type]
    return (time.process_time() - t) / n * 1e6


def threads_ns(pid: int) -> dict[str, int]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


async def in_situ(python: str, shape: str, rate: float, seconds: float) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from driftline.sdk.sidecar.event_worker import EventWorker
    from driftline.sdk.sidecar.metrics import SidecarMetrics

    worker = EventWorker(worker_config(), SidecarMetrics(CollectorRegistry()), python=python)  # type: ignore[arg-type]
    handoffs = 0
    flush = worker._flush

    def counted() -> None:
        nonlocal handoffs, loop_s
        handoffs += bool(worker._batch)
        t = time.thread_time()
        flush()
        loop_s += time.thread_time() - t

    worker._flush = counted  # type: ignore[method-assign]
    loop_s = 0.0
    await worker.start()
    try:
        for i in range(200):  # the child's imports, msgspec's compiled types, first-use caches
            worker.submit(exchange(i, shape))  # type: ignore[arg-type]
        await asyncio.sleep(1.5)
        pid = worker.pid
        assert pid is not None
        before, handoffs, loop_s = threads_ns(pid), 0, 0.0
        n, t0 = int(rate * seconds), time.perf_counter()
        for i in range(n):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            x = exchange(i, shape)
            t = time.thread_time()
            worker.submit(x)  # type: ignore[arg-type]
            loop_s += time.thread_time() - t
        await asyncio.sleep(1.0)  # the last hand-off, and one report interval
        after = threads_ns(pid)
    finally:
        await worker.stop()
    per_thread = sorted(((after[t] - before.get(t, 0)) / n / 1e3 for t in after), reverse=True)
    total = sum(after[t] - before.get(t, 0) for t in after)
    return {"child_us": total / n / 1e3, "burst_ms": total / max(1, handoffs) / 1e6, "handoffs": handoffs,
            "threads_us": per_thread, "loop_us": loop_s / n * 1e6}


def measure(python: str, shape: str, rate: float, seconds: float) -> dict[str, float]:
    """Both figures with ``python``'s driftline, in a subprocess of it (parent and child its code)."""
    out = subprocess.run([python, __file__, "--one", "--shape", shape, "--rate", str(rate), "--seconds", str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="another interpreter whose driftline is the baseline")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--shape", choices=sorted(BODIES), default="flat")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        result = asyncio.run(in_situ(sys.executable, args.shape, args.rate, args.seconds))
        result["warm_us"] = warm(args.shape)
        print(json.dumps(result))
        return
    pythons = {"this": sys.executable}
    if args.baseline:
        pythons = {"baseline": args.baseline, "this": sys.executable}
    print(f"{args.shape} exchanges, {args.rate:.0f}/s for {args.seconds:g} s, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in pythons}
    for r in range(args.rounds):
        order = list(pythons) if r % 2 == 0 else list(pythons)[::-1]
        for name in order:
            res = measure(pythons[name], args.shape, args.rate, args.seconds)
            results[name].append(res)
            print(f"  round {r + 1} {name:8s}: child warm {res['warm_us']:5.1f} us/exchange; in situ {res['child_us']:5.1f} "
                  f"us/exchange (threads {', '.join(f'{x:.1f}' for x in res['threads_us'][:3])}), burst "
                  f"{res['burst_ms']:.2f} ms per hand-off; parent loop {res['loop_us']:.1f} us/exchange; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
    keys = ("warm_us", "child_us", "burst_ms", "loop_us")
    med = {name: {k: statistics.median(x[k] for x in rs) for k in keys} for name, rs in results.items()}
    for name, m in med.items():
        print(f"{name:8s} median: child warm {m['warm_us']:.1f} us/exchange, in situ {m['child_us']:.1f} us/exchange, "
              f"burst {m['burst_ms']:.2f} ms; parent loop {m['loop_us']:.1f} us/exchange")
    if "baseline" in med:
        b, t = med["baseline"], med["this"]
        print("this / baseline: " + ", ".join(f"{k} {t[k] / b[k]:.2f}x" for k in keys))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
