"""Time for `driftline up` to stop with a backlog in the embedded broker, and whether it kept it.

Run: python bench/bench_stop.py [--records 100000]
Starts `driftline up --no-dashboard` (free ports, temporary data dir), waits until the collector
stores, pauses the collector (SIGSTOP), logs ``--records`` events with ``driftline.sdk.Monitor`` and
flushes them (so they are acknowledged and held only by the in-memory broker), resumes the collector
(SIGCONT) and at once sends `up` SIGTERM. Prints the seconds from SIGTERM to exit, then starts `up`
again on the same data dir and counts how many of the events were stored (all is the target).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_soak import processes, start_up, stop_up, stored, wait_for  # noqa: E402


def main(records: int = 100_000, drain_timeout_s: float | None = None) -> dict[str, float]:
    import tempfile

    import clickhouse_connect

    from driftline.sdk import Monitor, SdkSettings

    data_dir = Path(tempfile.mkdtemp(prefix="bench-stop-"))
    extra = ("--drain-timeout-s", str(drain_timeout_s)) if drain_timeout_s else ()
    up, ports = start_up(data_dir, extra=extra)
    bootstrap = f"127.0.0.1:{ports['kafka']}"
    client = clickhouse_connect.get_client(host="127.0.0.1", port=ports["clickhouse"])
    features = {f"f{i}": i * 0.37 for i in range(20)}
    stop_s = float("nan")
    try:
        warm = Monitor(model="stop-warmup", settings=SdkSettings(kafka_bootstrap=bootstrap))
        warm.log(features, 0.5)
        warm.flush(30)
        wait_for(lambda: stored(client, "stop-warmup") >= 1, 180, "the first stored event", up)
        warm.close(5)
        collector = processes(up.pid).get("collector")
        if collector is None:
            raise SystemExit("no collector child found under `up`")
        os.kill(collector, signal.SIGSTOP)
        try:
            monitor = Monitor(model="stop", version="1",
                              settings=SdkSettings(kafka_bootstrap=bootstrap, queue_size=records + 10, batch_size=5000))
            t0 = time.perf_counter()
            for _ in range(records):
                monitor.log(features, 0.5, latency_ms=1.0)
            flushed = monitor.flush(120)
            dropped = monitor.stats().dropped_total
            monitor.close(10)
            produce_s = time.perf_counter() - t0
            held = stored(client, "stop")
        finally:
            os.kill(collector, signal.SIGCONT)
        print(f"{records:,} events logged and flushed in {produce_s:.1f} s (flush ok: {flushed}, dropped {dropped}); "
              f"stored before the stop: {held:,} (collector paused)")
        stop_s = stop_up(up, timeout_s=600)
        print(f"`up` exited {stop_s:.1f} s after SIGTERM (exit code {up.returncode})")
    finally:
        if up.poll() is None:
            stop_up(up, 60)
    tail = (data_dir / "up.out").read_text(errors="replace").strip().splitlines()[-6:]
    print("`up` said at the end:\n  " + "\n  ".join(tail))

    up2, ports2 = start_up(data_dir)
    try:
        client2 = clickhouse_connect.get_client(host="127.0.0.1", port=ports2["clickhouse"])
        kept = stored(client2, "stop")
        distinct = int(client2.query("SELECT uniqExact(event_id) FROM driftline.predictions "
                                     "WHERE model = 'stop'").result_rows[0][0])
    finally:
        stop_up(up2, 300)
    verdict = "all kept" if distinct == records - dropped else f"LOST {records - dropped - distinct:,}"
    print(f"after a restart on the same data dir: {kept:,} rows, {distinct:,} distinct of {records:,} ({verdict})")
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return {"stop_s": stop_s, "stored": distinct, "records": records}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--drain-timeout-s", type=float, default=None, help="passed to `up`")
    a = parser.parse_args()
    main(a.records, a.drain_timeout_s)
