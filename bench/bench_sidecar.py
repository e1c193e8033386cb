"""Added latency and throughput of the driftline sidecar vs calling the upstream directly and vs nginx.

One command, one run, same upstream for everyone:

    python bench/bench_sidecar.py [--rates 200,500] [--seconds 8] [--no-nginx]

* upstream: a minimal raw-asyncio HTTP/1.1 server answering a fixed JSON prediction (as light as
  possible, so the numbers are about the proxies, on a 2-core machine);
* nginx (Debian package, /usr/sbin/nginx): generated config in a temp dir, one worker, upstream
  keep-alive, access log off, run with ``daemon off`` on a free port;
* sidecar: ``build_app`` with the event worker process as ``driftline sidecar`` runs it (events
  built, validated, masked, JSON-encoded and exported to an in-memory exporter in the child), access
  log off, uvloop when installed; once more with events off (``log_methods=()``: the proxy alone,
  to show what events cost), once with events built inline (on the loop, exporter thread in the same
  interpreter, discarding exporter: the way before the event worker) and once on the default
  asyncio loop (to show what uvloop buys);
* latency: an open-loop generator at each fixed rate (default 200 and 500 req/s) over keep-alive
  connections, latency measured from each request's *scheduled* send time (no coordinated omission);
* max throughput: ``wrk`` (apt-get install wrk) for a few seconds with 32 connections.

Prints p50/p99 per target and rate, the added latency (target minus direct), the ratio of the
sidecar's added latency to nginx's, what events add to the sidecar's own p99 (target: <= 20 %),
and the sidecars' CPU time per request on the event-loop thread and elsewhere (exporter thread,
event worker process) -- a figure that, unlike p99, hardly moves with the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = b'{"age": 41, "income": 2.5, "plan": "pro", "tenure_months": 17}'
RESPONSE = b'{"prediction":0.5}'
HERE = Path(__file__).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def maybe_uvloop(enabled: bool = True) -> bool:
    if not enabled:
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


# -- roles (each runs in its own process) ----------------------------------------------------------
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


def role_sidecar(port: int, upstream: str, uvloop_on: bool, events: str = "worker") -> None:
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
        worker = EventWorker(WorkerConfig.from_settings(settings, SdkSettings(), exporter_factory=InMemoryExporter),
                             metrics)
        app = build_app(settings, metrics=metrics, events=worker)
    else:
        app = build_app(settings, metrics=metrics,
                        monitor_factory=lambda v: Monitor("bench", v, exporter=NullExporter(), settings=SdkSettings()))
    maybe_uvloop(uvloop_on)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, **SERVER_OPTIONS)


def role_loadgen(port: int, rate: float, seconds: float, conns: int) -> None:
    maybe_uvloop()
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
    cl_re = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")

    async def main() -> dict[str, float]:
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(conns):
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        lat: list[float] = []
        errors = 0

        async def one(scheduled: float) -> None:
            nonlocal errors
            reader, writer = await pool.get()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            m = cl_re.search(head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            lat.append(time.perf_counter() - scheduled)
            pool.put_nowait((reader, writer))

        n = int(rate * seconds)
        tasks = []
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        lat.sort()
        return {"n": len(lat), "errors": errors, "p50_ms": lat[len(lat) // 2] * 1000,
                "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "max_ms": lat[-1] * 1000,
                "achieved_rps": len(lat) / (time.perf_counter() - t0)}

    print(json.dumps(asyncio.run(main())))


# -- orchestration --------------------------------------------------------------------------------
def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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


def fixed_rate(port: int, rate: float, seconds: float) -> dict[str, float]:
    warm = subprocess.run([sys.executable, str(HERE), "--role", "loadgen", "--port", str(port), "--rate", str(rate),
                           "--seconds", "1"], capture_output=True, check=True)
    del warm
    out = subprocess.run([sys.executable, str(HERE), "--role", "loadgen", "--port", str(port), "--rate", str(rate),
                          "--seconds", str(seconds)], capture_output=True, check=True)
    return json.loads(out.stdout)


def cpu_ticks(pid: int) -> tuple[int, int]:
    """CPU ticks (user + system) of a sidecar: its event-loop thread, and everything else it runs (other
    threads, such as an exporter thread, and child processes, such as the event worker). CPU time, unlike
    latency, hardly depends on what else the machine runs."""

    def ticks(path: str) -> int:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    loop = ticks(f"/proc/{pid}/task/{pid}/stat")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return loop, ticks(f"/proc/{pid}/stat") - loop + sum(ticks(f"/proc/{c}/stat") for c in children)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=("upstream", "sidecar", "loadgen"))
    ap.add_argument("--port", type=int)
    ap.add_argument("--upstream")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--rate", type=float, default=500.0, help="loadgen role: requests per second")
    ap.add_argument("--rates", default="200,500", help="comma-separated fixed rates, req/s")
    ap.add_argument("--events", choices=("worker", "inline", "off"), default="worker",
                    help="sidecar role: events built in the event worker process, inline on the loop, or none")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--throughput-seconds", type=float, default=5.0)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.role == "upstream":
        return role_upstream(args.port)
    if args.role == "sidecar":
        return role_sidecar(args.port, args.upstream, not args.no_uvloop, args.events)
    if args.role == "loadgen":
        return role_loadgen(args.port, args.rate, args.seconds, args.conns)

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            up = free_port()
            procs.append(spawn("--role", "upstream", "--port", str(up)))
            targets = {"direct": up}
            if not args.no_nginx:
                ng = free_port()
                p = start_nginx(tmp, ng, up)
                if p is not None:
                    procs.append(p)
                    targets["nginx"] = ng
            sc = free_port()
            procs.append(spawn("--role", "sidecar", "--port", str(sc), "--upstream", f"http://127.0.0.1:{up}"))
            targets["sidecar"] = sc
            pids: dict[str, int] = {"sidecar": procs[-1].pid}
            sc_off = free_port()
            procs.append(spawn("--role", "sidecar", "--port", str(sc_off), "--upstream", f"http://127.0.0.1:{up}",
                               "--events", "off"))
            targets["sidecar (events off)"] = sc_off
            pids["sidecar (events off)"] = procs[-1].pid
            sc_in = free_port()
            procs.append(spawn("--role", "sidecar", "--port", str(sc_in), "--upstream", f"http://127.0.0.1:{up}",
                               "--events", "inline"))
            targets["sidecar (events inline)"] = sc_in
            pids["sidecar (events inline)"] = procs[-1].pid
            try:
                import uvloop  # noqa: F401

                sc2 = free_port()
                procs.append(spawn("--role", "sidecar", "--port", str(sc2), "--upstream", f"http://127.0.0.1:{up}",
                                   "--no-uvloop"))
                targets["sidecar (asyncio loop)"] = sc2
            except ImportError:
                pass
            for port in targets.values():
                wait_port(port)
            # Rounds interleave the targets, so load from anything else on the machine hits all of
            # them alike; each figure is the median over the rounds.
            rates = [float(r) for r in args.rates.split(",")]
            by_rate: dict[float, dict[str, dict[str, float]]] = {}
            cpu: dict[float, dict[str, list[float]]] = {}
            for rate in rates:
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                cpu[rate] = {name: [0.0, 0.0, 0.0] for name in pids}  # loop ticks, other ticks, requests
                for i in range(args.rounds):
                    for name, port in targets.items():
                        before = cpu_ticks(pids[name]) if name in pids else None
                        r = fixed_rate(port, rate, args.seconds)
                        if before is not None:
                            after = cpu_ticks(pids[name])
                            acc = cpu[rate][name]
                            acc[0] += after[0] - before[0]
                            acc[1] += after[1] - before[1]
                            acc[2] += rate * (1.0 + args.seconds)  # the 1 s warm-up included
                        rounds[name].append(r)
                        print(f"  {rate:.0f} req/s round {i + 1} {name:24s} p50 {r['p50_ms']:.3f} ms  "
                              f"p99 {r['p99_ms']:.3f} ms", flush=True)
                by_rate[rate] = {name: {k: statistics.median(x[k] for x in rounds[name]) for k in rounds[name][0]}
                                 for name in targets}
            max_rps = {name: max_throughput(port, tmp, args.throughput_seconds) or float("nan")
                       for name, port in targets.items()}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    for rate, results in by_rate.items():
        report(rate, results)
        print("  CPU per request (all rounds): " + "; ".join(
            f"{name} loop thread {loop * tick_us / n:.0f} us + other threads/processes {other * tick_us / n:.0f} us"
            for name, (loop, other, n) in cpu[rate].items()))
    print("\nmax throughput: " + ", ".join(f"{name} {v:.0f} req/s" for name, v in max_rps.items()))


def report(rate: float, results: dict[str, dict[str, float]]) -> None:
    """Added latency at one rate: each target minus direct, the sidecar beside nginx, what events cost."""
    d = results["direct"]
    print(f"\nadded latency at {rate:.0f} req/s (target minus direct; achieved "
          f"{results['sidecar']['achieved_rps']:.0f} req/s):")
    for name, r in results.items():
        if name != "direct":
            print(f"  {name:24s} p50 +{r['p50_ms'] - d['p50_ms']:.3f} ms  p99 +{r['p99_ms'] - d['p99_ms']:.3f} ms  "
                  f"({int(r['errors'])} errors)")
    s = results["sidecar"]
    if "nginx" in results:
        n = results["nginx"]
        for q in ("p50_ms", "p99_ms"):
            added_n, added_s = n[q] - d[q], s[q] - d[q]
            ratio = added_s / added_n if added_n > 0 else float("inf")
            print(f"  sidecar/nginx added latency {q[:3]}: {ratio:.1f}x")
    off = results["sidecar (events off)"]
    own_on, own_off = s["p99_ms"] - d["p99_ms"], off["p99_ms"] - d["p99_ms"]
    cost = (own_on - own_off) / own_off if own_off > 0 else float("inf")
    print(f"  events on add {100 * cost:+.0f} % to the sidecar's own p99 (target <= 20 %: "
          f"{'met' if cost <= 0.20 else 'MISSED'})")
    if "sidecar (events inline)" in results:
        own_in = results["sidecar (events inline)"]["p99_ms"] - d["p99_ms"]
        cost_in = (own_in - own_off) / own_off if own_off > 0 else float("inf")
        print(f"  (events inline on the loop, the way before the event worker: {100 * cost_in:+.0f} %)")
    ok50, ok99 = s["p50_ms"] - d["p50_ms"] <= 1.0, own_on <= 3.0
    print(f"  targets: added p50 <= 1 ms {'met' if ok50 else 'MISSED'}; added p99 <= 3 ms {'met' if ok99 else 'MISSED'}")

if __name__ == "__main__":
    main()
