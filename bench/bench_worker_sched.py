"""What the event worker's scheduling policy costs a proxy sharing its CPU, and what it leaves the worker.

    python bench/bench_worker_sched.py [--seconds 8]

Both measurements pin their processes to CPU 0, so they meet on one run queue (as the sidecar and
its event worker do whenever the other CPUs are busy), and set the worker up with the sidecar's own
policy function (``event_process._batch_scheduling``):

* **wake-up latency**: a normal task (the proxy) sleeps 0.7 ms, then works 0.1 ms, over and over;
  how late it wakes, p50 / p99 / p99.9 / max, alone and beside a worker that works in 2 ms bursts
  (as a 50 ms hand-off of ~25 exchanges is) of 45 µs pieces (one exchange), under each policy:
  ``batch`` (SCHED_BATCH, nice +10), ``yield`` (the same, ``sched_yield`` after each piece) and
  ``idle`` (SCHED_IDLE). The ratio to "alone" is the figure.
* **the worker's share** of the CPU against one busy normal task, per policy: what it keeps when
  the machine is saturated (``yield`` alone would keep almost none, which is why the worker only
  yields while no hand-off waits: ``event_process.run``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

PIECE_S = 45e-6
POLICIES = ("batch", "yield", "idle")


def _spin(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def role_worker(policy: str, seconds: float, bursty: bool) -> None:
    from driftline.sdk.sidecar.event_process import _batch_scheduling

    os.sched_setaffinity(0, {0})
    _batch_scheduling(policy)  # type: ignore[arg-type]
    give_way = os.sched_yield if policy == "yield" else None
    end, pieces = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        burst_end = time.perf_counter() + 0.002
        while not bursty or time.perf_counter() < burst_end:
            _spin(PIECE_S)
            pieces += 1
            if give_way is not None:
                give_way()
            if not bursty and time.monotonic() >= end:
                break
        if bursty:
            time.sleep(0.002)
    print(pieces, time.process_time())


def role_proxy(seconds: float) -> None:
    os.sched_setaffinity(0, {0})
    late: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        time.sleep(0.0007)
        late.append((time.perf_counter() - t - 0.0007) * 1e6)
        _spin(100e-6)
    late.sort()
    q = [late[int(len(late) * f)] for f in (0.5, 0.99, 0.999)]
    print(" ".join(f"{x:.0f}" for x in [*q, late[-1]]))


def role_busy(seconds: float) -> None:
    os.sched_setaffinity(0, {0})
    _spin(seconds)


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--role", choices=("worker", "proxy", "busy"))
    ap.add_argument("--policy", choices=POLICIES)
    ap.add_argument("--bursty", action="store_true")
    args = ap.parse_args()
    if args.role == "worker":
        return role_worker(args.policy, args.seconds, args.bursty)
    if args.role == "proxy":
        return role_proxy(args.seconds)
    if args.role == "busy":
        return role_busy(args.seconds)

    print("wake-up lateness of a normal task on the worker's CPU, us: p50 / p99 / p99.9 / max (p99 vs alone)")
    alone = [float(x) for x in _run("--role", "proxy", "--seconds", str(args.seconds)).communicate()[0].split()]
    print(f"  alone         {' / '.join(f'{x:.0f}' for x in alone)}")
    for policy in POLICIES:
        worker = _run("--role", "worker", "--policy", policy, "--bursty", "--seconds", str(args.seconds + 1))
        time.sleep(0.3)
        got = [float(x) for x in _run("--role", "proxy", "--seconds", str(args.seconds)).communicate()[0].split()]
        worker.communicate()
        print(f"  beside {policy:6s} {' / '.join(f'{x:.0f}' for x in got)}  ({got[1] / alone[1]:.1f}x)")
    print("the worker's share of the CPU against one busy normal task:")
    for policy in POLICIES:
        busy = _run("--role", "busy", "--seconds", str(args.seconds + 1))
        time.sleep(0.1)
        out = _run("--role", "worker", "--policy", policy, "--seconds", str(args.seconds)).communicate()[0]
        busy.communicate()
        print(f"  {policy:6s} {100 * float(out.split()[1]) / args.seconds:5.1f} % of the CPU")


if __name__ == "__main__":
    main()
