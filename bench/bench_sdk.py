"""Cost of Monitor.log() per call (p50, p99) beside prometheus_client Histogram.observe().

Run: python bench/bench_sdk.py
The monitor exports to an in-memory sink with the worker thread running, as in production, so
the figures include contention with the exporter thread. Also reports `import driftline.sdk` time.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    s = sorted(samples_ns)
    return statistics.median(s) / 1000, s[int(len(s) * 0.99)] / 1000


def bench_log(n: int = 200_000) -> tuple[float, float]:
    from driftline.sdk import InMemoryExporter, Monitor, SdkSettings

    sink = InMemoryExporter()
    monitor = Monitor(model="bench", version="1", exporter=sink,
                      settings=SdkSettings(queue_size=n + 10, batch_size=1000))
    features = {f"f{i}": i * 0.5 for i in range(20)}
    samples = []
    gc.disable()
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            monitor.log(features, 0.73, latency_ms=1.2)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    monitor.flush(60)
    assert monitor.stats().exported == n
    monitor.close(5)
    return percentiles(samples)


def bench_observe(n: int = 200_000) -> tuple[float, float]:
    from prometheus_client import CollectorRegistry, Histogram

    hist = Histogram("bench_seconds", "bench", registry=CollectorRegistry())
    samples = []
    gc.disable()
    try:
        for i in range(n):
            t0 = time.perf_counter_ns()
            hist.observe(0.001 * (i % 100))
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return percentiles(samples)


def import_time_ms(runs: int = 5) -> float:
    code = "import time; t = time.perf_counter(); import driftline.sdk; print((time.perf_counter() - t) * 1000)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(runs)]
    return statistics.median(times)


def main() -> dict[str, float]:
    obs50, obs99 = bench_observe()
    log50, log99 = bench_log()
    imp = import_time_ms()
    print("Monitor.log() vs prometheus_client Histogram.observe(), 200k calls each, 20 features")
    print(f"  Histogram.observe()  p50 {obs50:6.2f} us   p99 {obs99:6.2f} us")
    print(f"  Monitor.log()        p50 {log50:6.2f} us   p99 {log99:6.2f} us   (target p99 <= 20 us)")
    print(f"  ratio log/observe    p50 {log50 / obs50:5.1f}x     p99 {log99 / obs99:5.1f}x   (target <= 5x)")
    print(f"  import driftline.sdk {imp:6.1f} ms (median of 5 fresh interpreters; target < 150 ms)")
    return {"log_p50_us": log50, "log_p99_us": log99, "observe_p50_us": obs50, "observe_p99_us": obs99,
            "import_ms": imp}


if __name__ == "__main__":
    main()
