"""Added latency and throughput of the driftline sidecar vs calling the upstream directly and vs nginx.

One command, one run, same upstream for everyone:

    python bench/bench_sidecar.py [--rates 200,500] [--rounds 7] [--seconds 8] [--no-nginx] [--no-extras]

* upstream: a minimal raw-asyncio HTTP/1.1 server answering a fixed JSON prediction (as light as
  possible, so the numbers are about the proxies, on a 2-core machine);
* nginx (Debian package, /usr/sbin/nginx): generated config in a temp dir, one worker, upstream
  keep-alive, access log off, run with ``daemon off`` on a free port;
* sidecar: ``build_app`` with the event worker process as ``driftline sidecar`` runs it (events
  built, validated, masked, JSON-encoded and exported to an in-memory exporter in the child), access
  log off, uvloop when installed; once more with events off (``log_methods=()``: the proxy alone,
  to show what events cost); unless ``--no-extras``, once with events built inline (on the loop,
  exporter thread in the same interpreter: the way before the event worker) and once on the default
  asyncio loop (to show what uvloop buys). ``--extra-sidecar NAME="--handoff-ms 10"`` adds an event
  worker sidecar started with other role flags (``bench/sidecar_roles.py``), for A/B runs;
* latency: an open-loop generator at each fixed rate (default 200 and 500 req/s) over keep-alive
  connections, latency measured from each request's *scheduled* send time (no coordinated omission);
* max throughput: ``wrk`` (apt-get install wrk) for a few seconds with 32 connections.

The verdict on "events on add <= 20 % to the sidecar's own p99" is per round, not one run's ratio:
in every round one load generator takes direct, nginx and each sidecar in turn, in blocks of
``--block-seconds`` (1 s; a fresh shuffled order for each pass, 150 ms pause after each block), until
each had ``--seconds``: so the machine's slow changes (another tenant, a noisy minute) fall on every
target alike instead of on whichever ran then (``--block-seconds 0``: the older way, each target's
``--seconds`` in one piece, direct first and events on / off back to back, their order alternating
between rounds). A round's ratio is
(on p99 - direct p99) / (off p99 - direct p99) - 1. Printed: each round's figures, the median ratio
over the rounds with its spread, and the same ratio from the p99 of all rounds' requests pooled. The
verdict is the median's exact sign-test interval (``bench/sidecar_verdict.py``, 95 %): met when it
lies wholly at or below 20 %, not met when wholly above, else "undecided at this N". Beside it,
judged the same way: the ratio from every round's requests pooled, with a bootstrap interval that
resamples whole rounds (``pooled_interval``; steadier than a median of per-round ratios of
differences, which explode in a round where the sidecar without events added little).
Also per sidecar: CPU time per request on the event-loop thread and elsewhere (exporter thread, event
worker process), event-loop lag and garbage-collection pauses -- figures that, unlike p99, hardly
move with the machine's other load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from driftline.collector.embedded.broker import free_port  # outside the ephemeral range

# bench/ is the script's directory
from sidecar_roles import cpu_us
from sidecar_verdict import (POOLED_MIN_ROUNDS, interval_verdict, median_interval, pooled_interval,
                             rounds_for_decision, verdict)

HERE = Path(__file__).resolve()
ROLES = HERE.with_name("sidecar_roles.py")
BODY = b'{"age": 41, "income": 2.5, "plan": "pro", "tenure_months": 17}'
ON, OFF = "sidecar", "sidecar (events off)"
TARGET_RATIO = 0.20
CONFIDENCE = 0.95  # of the interval for the median ratio (bench/sidecar_verdict.py)


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Target:
    name: str
    port: int
    pid: int | None = None  # sidecars: for CPU time from /proc
    stats_port: int | None = None  # sidecars: loop lag and GC pauses
    rounds: list[dict[str, float]] = field(default_factory=list)
    lats: list[list[float]] = field(default_factory=list)  # latencies per round, ms
    loop_stats: list[dict[str, float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # loop, other, run-queue wait; requests


def spawn_role(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(ROLES), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_nginx(tmp: Path, port: int, upstream_port: int) -> subprocess.Popen[bytes] | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream model {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def fixed_rate(port: int, rate: float, seconds: float) -> tuple[dict[str, float], list[float]]:
    base = [sys.executable, str(ROLES), "--role", "loadgen", "--port", str(port), "--rate", str(rate)]
    subprocess.run([*base, "--seconds", "1"], capture_output=True, check=True)  # warm-up
    out = json.loads(subprocess.run([*base, "--seconds", str(seconds), "--latencies"], capture_output=True,
                                    check=True).stdout)
    return out["summary"], out["latencies_ms"]


def loop_stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        return json.loads(r.read())


def max_throughput(port: int, tmp: Path, seconds: float) -> float | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = '{BODY.decode()}'\n")
    out = subprocess.run([wrk, "-t1", "-c32", f"-d{int(seconds)}s", "-s", str(script),
                          f"http://127.0.0.1:{port}/predict"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if non2xx:
        print(f"  warning: {non2xx.group(1)} non-2xx responses from port {port}")
    return float(m.group(1)) if m else None


def load_average() -> float:
    return os.getloadavg()[0]


def round_order(targets: list[Target], i: int) -> list[Target]:
    """direct first, then events on and off back to back (swapped every other round), then the rest."""
    by = {t.name: t for t in targets}
    pair = [by[ON], by[OFF]] if i % 2 == 0 else [by[OFF], by[ON]]
    rest = [t for t in targets if t.name not in ("direct", ON, OFF)]
    return [by["direct"], *pair, *rest]


def measure(targets: list[Target], rate: float, rounds: int, seconds: float) -> list[float]:
    """Run ``rounds`` rounds at ``rate``; returns the load average seen at each target's start."""
    loads: list[float] = []
    for i in range(rounds):
        for t in round_order(targets, i):
            loads.append(load_average())
            if t.stats_port is not None:
                loop_stats(t.stats_port)  # reset: only this target's measurement counts
            before = cpu_us(t.pid) if t.pid is not None else None
            summary, lats = fixed_rate(t.port, rate, seconds)
            cpu = None
            if before is not None and t.pid is not None:
                cpu = [a - b for a, b in zip(cpu_us(t.pid), before)]
            record(t, rate, i, summary, lats, cpu, rate * (1.0 + seconds))  # the 1 s warm-up included
    return loads


def record(t: Target, rate: float, i: int, summary: dict[str, float], lats: list[float],
           cpu: list[float] | None, requests: float) -> None:
    """One target's round: its latencies, CPU (``cpu_us`` differences over ``requests``), loop stats."""
    if cpu is not None:
        for k in range(3):
            t.cpu[k] += cpu[k]
        t.cpu[3] += requests
    if t.stats_port is not None:
        t.loop_stats.append(loop_stats(t.stats_port))
    t.rounds.append(summary)
    t.lats.append(lats)
    print(f"  {rate:.0f} req/s round {i + 1} {t.name:28s} p50 {summary['p50_ms']:.3f} ms  "
          f"p99 {summary['p99_ms']:.3f} ms", flush=True)


def measure_interleaved(targets: list[Target], rate: float, rounds: int, seconds: float,
                        block_s: float) -> list[float]:
    """Run ``rounds`` rounds at ``rate``, each one load generator taking every target in turn in blocks
    of ``block_s`` (``sidecar_roles.role_interleaved``) until each had ``seconds``. CPU per request is
    counted over a sidecar's own blocks (read by the load generator); loop lag and GC pauses are per
    round, the time between its blocks included."""
    loads: list[float] = []
    cmd = [sys.executable, str(ROLES), "--role", "interleaved", "--ports", ",".join(str(t.port) for t in targets),
           "--pids", ",".join(str(t.pid or 0) for t in targets), "--rate", str(rate), "--seconds", str(seconds),
           "--block-s", str(block_s)]
    for i in range(rounds):
        loads.append(load_average())
        for t in targets:
            if t.stats_port is not None:
                loop_stats(t.stats_port)  # reset: only this round counts
        out = json.loads(subprocess.run([*cmd, "--seed", str(i)], capture_output=True, check=True).stdout)
        for t in targets:
            got = out[str(t.port)]
            record(t, rate, i, got["summary"], got["latencies_ms"], got["cpu_us"] if t.pid is not None else None,
                   got["summary"]["n"])
        loads.append(load_average())
    return loads


def p99(lats: list[float]) -> float:
    s = sorted(lats)
    return s[int(len(s) * 0.99)]


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def events_cost(on: float, off: float, direct: float) -> float:
    """What events on add to the sidecar's own p99: added p99 with events / added p99 without - 1.

    NaN when the sidecar without events added nothing (direct's p99 was as high: a spike of the
    machine in that round); such rounds carry no verdict and are left out of the median."""
    added_off = off - direct
    return (on - direct) / added_off - 1.0 if added_off > 0 else float("nan")


def pct(c: float) -> str:
    return f"{100 * c:+.0f} %" if c == c else "n/a"


def report(rate: float, targets: list[Target], loads: list[float]) -> None:
    by = {t.name: t for t in targets}
    d = by["direct"]
    print(f"\n== {rate:.0f} req/s: {len(d.rounds)} rounds; load average {min(loads):.2f}-{max(loads):.2f} "
          f"(mean {statistics.mean(loads):.2f}); achieved {by[ON].rounds[0]['achieved_rps']:.0f} req/s")
    print("per round, p99 ms (direct / events on / events off) -> added p99 on vs off, events' cost:")
    costs = []
    for i, (rd, ron, roff) in enumerate(zip(d.rounds, by[ON].rounds, by[OFF].rounds)):
        c = events_cost(ron["p99_ms"], roff["p99_ms"], rd["p99_ms"])
        costs.append(c)
        print(f"  round {i + 1}: {rd['p99_ms']:.3f} / {ron['p99_ms']:.3f} / {roff['p99_ms']:.3f} -> "
              f"{ron['p99_ms'] - rd['p99_ms']:+.3f} vs {roff['p99_ms'] - rd['p99_ms']:+.3f} ms: "
              + (pct(c) if c == c else "no verdict (events off added nothing)"))
    print("target          p50 ms  p99 ms  added p50  added p99  (medians over rounds)  pooled p99, added")
    med = {t.name: {k: statistics.median(r[k] for r in t.rounds) for k in ("p50_ms", "p99_ms")} for t in targets}
    pooled = {t.name: p99([x for r in t.lats for x in r]) for t in targets}
    for t in targets:
        m = med[t.name]
        added = "" if t is d else (f"{m['p50_ms'] - med['direct']['p50_ms']:+9.3f}  "
                                   f"{m['p99_ms'] - med['direct']['p99_ms']:+9.3f}")
        print(f"  {t.name:28s} {m['p50_ms']:7.3f} {m['p99_ms']:7.3f} {added:21s}  {pooled[t.name]:7.3f}"
              + ("" if t is d else f" {pooled[t.name] - pooled['direct']:+7.3f}"))
    skipped = sum(c != c for c in costs)
    costs = [c for c in costs if c == c] or [float("nan")]
    q1, q2, q3 = quartiles(costs)
    met = sum(c <= TARGET_RATIO for c in costs)
    pooled_cost = events_cost(pooled[ON], pooled[OFF], pooled["direct"])
    lo, hi, cover = median_interval(costs, CONFIDENCE)
    print(f"events on add {100 * q2:+.0f} % to the sidecar's own p99, median of {len(costs)} rounds "
          f"(quartiles {100 * q1:+.0f} / {100 * q3:+.0f} %, range {100 * min(costs):+.0f} .. {100 * max(costs):+.0f} %; "
          f"<= 20 % in {met} of {len(costs)} rounds; {skipped} rounds without a verdict); pooled over all rounds' requests {pct(pooled_cost)}")
    print(f"  the median's sign-test interval: {pct(lo)} .. {pct(hi)} (covers the true median with probability "
          f"{100 * cover:.1f} %) -- target <= 20 %: {verdict(costs, TARGET_RATIO, CONFIDENCE).upper()}"
          + ("" if cover >= CONFIDENCE else f" (no verdict below {rounds_for_decision(CONFIDENCE)} rounds with one)"))
    est, plo, phi = pooled_interval({k: by[k].lats for k in ("direct", ON, OFF)},
                                    lambda p: events_cost(p[ON], p[OFF], p["direct"]), confidence=CONFIDENCE)
    print(f"  pooled: {pct(est)}, bootstrap interval over rounds {pct(plo)} .. {pct(phi)} ({100 * CONFIDENCE:.0f} %) "
          f"-- target <= 20 %: {interval_verdict(plo, phi, TARGET_RATIO, len(d.rounds)).upper()}"
          + ("" if len(d.rounds) >= POOLED_MIN_ROUNDS else f" (no verdict below {POOLED_MIN_ROUNDS} rounds)"))
    for t in targets:
        if t.pid is not None and t.name not in (ON, OFF):
            per = [c for r, roff, rd in zip(t.rounds, by[OFF].rounds, d.rounds)
                   if (c := events_cost(r["p99_ms"], roff["p99_ms"], rd["p99_ms"])) == c] or [float("nan")]
            print(f"  ({t.name} vs events off: median {pct(statistics.median(per))} over rounds, pooled "
                  f"{pct(events_cost(pooled[t.name], pooled[OFF], pooled['direct']))})")
    s, n = med[ON], med.get("nginx")
    if n is not None:
        for q in ("p50_ms", "p99_ms"):
            added_n, added_s = n[q] - med["direct"][q], s[q] - med["direct"][q]
            print(f"  sidecar/nginx added latency {q[:3]}: "
                  f"{added_s / added_n if added_n > 0 else float('inf'):.1f}x")
    ok50, ok99 = s["p50_ms"] - med["direct"]["p50_ms"] <= 1.0, s["p99_ms"] - med["direct"]["p99_ms"] <= 3.0
    print(f"  targets: added p50 <= 1 ms {'met' if ok50 else 'MISSED'}; added p99 <= 3 ms {'met' if ok99 else 'MISSED'}")
    for t in targets:
        if t.pid is None:
            continue
        loop, other, wait, nreq = t.cpu
        line = (f"  {t.name:28s} per request: loop thread CPU {loop / nreq:.0f} us, CPU elsewhere {other / nreq:.0f} us, "
                f"loop run-queue wait {wait / nreq:.0f} us")
        if t.loop_stats:
            ls = t.loop_stats
            line += (f"; loop lag p99 {statistics.median(x['lag_p99_ms'] for x in ls):.2f} ms (median of rounds), "
                     f"max {max(x['lag_max_ms'] for x in ls):.1f} ms; GC per round: "
                     + ", ".join(f"gen{g} {statistics.median(x[f'gc{g}_n'] for x in ls):.0f}x "
                                 f"{statistics.median(x[f'gc{g}_ms'] for x in ls):.1f} ms" for g in range(3))
                     + f", longest pause {max(x['gc_max_ms'] for x in ls):.1f} ms")
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="200,500", help="comma-separated fixed rates, req/s")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per rate (the verdict is their median)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per target per round")
    ap.add_argument("--block-seconds", type=float, default=1.0,
                    help="targets take turns in blocks this long within a round (0: one after the other)")
    ap.add_argument("--throughput-seconds", type=float, default=5.0)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the inline-events and asyncio-loop sidecars (shorter runs, more rounds)")
    ap.add_argument("--extra-sidecar", action="append", default=[], metavar='NAME="FLAGS"',
                    help='another event-worker sidecar with these role flags, e.g. h10="--handoff-ms 10"')
    args = ap.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            up = free_port()
            procs.append(spawn_role("--role", "upstream", "--port", str(up)))
            targets = [Target("direct", up)]
            if not args.no_nginx:
                ng = free_port()
                p = start_nginx(tmp, ng, up)
                if p is not None:
                    procs.append(p)
                    targets.append(Target("nginx", ng))
            sidecars = [(ON, []), (OFF, ["--events", "off"])]
            if not args.no_extras:
                sidecars.append(("sidecar (events inline)", ["--events", "inline"]))
                try:
                    import uvloop  # noqa: F401

                    sidecars.append(("sidecar (asyncio loop)", ["--no-uvloop"]))
                except ImportError:
                    pass
            for spec in args.extra_sidecar:
                name, _, flags = spec.partition("=")
                sidecars.append((f"sidecar ({name})", shlex.split(flags)))
            for name, flags in sidecars:
                port, stats = free_port(), free_port()
                procs.append(spawn_role("--role", "sidecar", "--port", str(port), "--upstream",
                                        f"http://127.0.0.1:{up}", "--stats-port", str(stats), *flags))
                targets.append(Target(name, port, procs[-1].pid, stats))
            for t in targets:
                wait_port(t.port)
                if t.stats_port is not None:
                    wait_port(t.stats_port)
            rates = [float(r) for r in args.rates.split(",")]
            loads = {}
            for rate in rates:
                for t in targets:
                    t.rounds, t.lats, t.loop_stats, t.cpu = [], [], [], [0.0, 0.0, 0.0, 0.0]
                loads[rate] = (measure_interleaved(targets, rate, args.rounds, args.seconds, args.block_seconds)
                               if args.block_seconds > 0 else measure(targets, rate, args.rounds, args.seconds))
                report(rate, targets, loads[rate])
            max_rps = {t.name: max_throughput(t.port, tmp, args.throughput_seconds) or float("nan")
                       for t in targets}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    print("\nmax throughput: " + ", ".join(f"{name} {v:.0f} req/s" for name, v in max_rps.items()))


if __name__ == "__main__":
    main()
