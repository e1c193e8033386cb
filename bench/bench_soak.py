"""Soak: millions of events at a steady rate through `driftline up`, memory of every process.

Run: python bench/bench_soak.py [--events 5000000] [--rate 12000] [--report-s 60]
Starts `driftline up --no-dashboard` as a real subprocess on free ports with a temporary data dir,
logs events with ``driftline.sdk.Monitor`` at a steady rate (20 numeric features each, like
bench_pipeline), and every ``--report-s`` seconds prints the resident memory (VmRSS) of `up` and of
each of its children (broker, store, collector, ...), the broker's share of the total and its
bytes per event produced so far. At the end it checks that every event was stored
(``SELECT count() FROM driftline.predictions``) and stops `up` with SIGTERM.

Flat memory is the target (issue 12, point 6). A short run: --events 200000 --report-s 10.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (VmRSS), NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children file)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return sorted(set(out))


def role(pid: int) -> str:
    """Name a child of `up` by its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    joined = " ".join(words)
    if words and "tansu" in Path(words[0]).name:
        return "broker"
    if "driftline.collector.embedded.chstore" in joined:
        return "store"
    for name in ("collector", "dashboard", "alerts", "demo", "sidecar"):
        if name in words:
            return name
    return Path(words[0]).name if words else "?"


def processes(up_pid: int) -> dict[str, int]:
    """`up` and its children by role (a second child of one role gets a suffix)."""
    out = {"up": up_pid}
    for pid in children(up_pid):
        name = role(pid)
        key, n = name, 2
        while key in out:
            key, n = f"{name}#{n}", n + 1
        out[key] = pid
    return out


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None,
             poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"`driftline up` exited (code {proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def start_up(data_dir: Path, *, extra: tuple[str, ...] = (),
             env_extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, dict[str, int]]:
    """`driftline up --no-dashboard` on free ports; returns the process and its ports.

    ``env_extra``: ``NAME=VALUE`` set in `up`'s environment (so its children's) after every
    inherited ``DRIFTLINE_*`` variable was dropped, e.g. the collector's memory probe."""
    from driftline.collector.embedded.broker import free_port, port_open

    ports = {"kafka": free_port(), "clickhouse": free_port(), "metrics": free_port()}
    cmd = [sys.executable, "-m", "driftline.cli", "up", "--no-dashboard", "--data-dir", str(data_dir),
           "--kafka-port", str(ports["kafka"]), "--clickhouse-port", str(ports["clickhouse"]),
           "--metrics-port", str(ports["metrics"]), *extra]
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(data_dir / "up.out", "ab")  # noqa: SIM115 - owned by the child
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update(kv.split("=", 1) for kv in env_extra)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    wait_for(lambda: port_open("127.0.0.1", ports["kafka"]) and port_open("127.0.0.1", ports["clickhouse"])
             and port_open("127.0.0.1", ports["metrics"]), 180, "the stack's ports", proc)
    return proc, ports


class GatedStack:
    """The embedded pieces without `up`: Tansu behind a ProduceGate (in this process), the store,
    and a restartable `driftline collector`, with a TopicRotator that rotates the topics once the
    broker's resident memory reaches ``rotate_mib`` (measures the mechanism before `up` wires it in)."""

    def __init__(self, data_dir: Path, rotate_mib: float, interval_s: float = 15.0, kill: bool = False) -> None:
        from driftline.collector.embedded.broker import free_port
        from driftline.collector.topics import ensure_topics
        from driftline.collector.embedded.broker_retention import TopicRotator
        from driftline.collector.embedded.produce_gate import start_gated_broker
        from driftline.collector.embedded.chstore import start_chstore
        from driftline.collector.store.client import connect
        from driftline.collector.store.tables import migrate

        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.kill = kill
        self.broker, self.gate = start_gated_broker(log_path=data_dir / "logs" / "broker.log")
        self.store = start_chstore(data_dir / "clickhouse")
        migrate(connect(self.store.url, retry_for_s=30))
        self.topics = ["driftline.predictions", "driftline.labels", "driftline.outcomes"]
        ensure_topics(self.gate.address, [*self.topics, "driftline.deadletter"], partitions=4)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")},
                    "DRIFTLINE_KAFKA_BOOTSTRAP": self.gate.address, "DRIFTLINE_CLICKHOUSE_URL": self.store.url,
                    "DRIFTLINE_METRICS_PORT": str(free_port()), "DRIFTLINE_DATA_DIR": str(data_dir)}
        self.collector: subprocess.Popen | None = None
        self.collector_stops: list[float] = []
        self.start_collector()
        self.rotator = TopicRotator(self.gate.address, "driftline-collector", self.topics, gate=self.gate,
                                    stop_consumers=self.stop_collector, start_consumers=self.start_collector,
                                    interval_s=interval_s, max_rss_bytes=int(rotate_mib * 2**20), broker_pid=lambda: self.broker.proc.pid)
        self.rotator.start()

    @property
    def clickhouse_port(self) -> int:
        return int(self.store.url.rsplit(":", 1)[1].split("/")[0])

    def start_collector(self) -> None:
        log = open(self.data_dir / "logs" / "collector.log", "ab")  # noqa: SIM115 - owned by the child
        self.collector = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collector"], env=self.env,
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def stop_collector(self) -> None:
        assert self.collector is not None
        t0 = time.perf_counter()
        if self.kill:
            self.collector.kill()  # safe in a rotation: the group has committed (so stored) every record
        else:
            self.collector.terminate()
        self.collector.wait(60)
        self.collector_stops.append(time.perf_counter() - t0)

    def processes(self) -> dict[str, int]:
        out = {"bench(SDK+gate)": os.getpid(), "broker": self.broker.proc.pid, "store": self.store.proc.pid}
        if self.collector is not None:
            out["collector"] = self.collector.pid
        return out

    def poll(self) -> int | None:
        return None if self.broker.proc.poll() is None and self.store.proc.poll() is None else 1

    def stop(self) -> None:
        if self.gate._loop is None:
            return  # stopped already
        self.rotator.stop()
        if self.collector is not None and self.collector.poll() is None:
            self.stop_collector()
        self.gate.stop()
        self.broker.stop()
        self.store.stop()


def stored(client, model: str) -> int:
    return int(client.query("SELECT count() FROM driftline.predictions WHERE model = {m:String}",
                            parameters={"m": model}).result_rows[0][0])


def stop_up(proc: subprocess.Popen, timeout_s: float = 300) -> float:
    """SIGTERM `up`; seconds until it exited."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return float("inf")
    return time.perf_counter() - t0


def _log_setup() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("driftline.collector").setLevel(logging.DEBUG)


def main(events: int = 5_000_000, rate: float = 12_000, report_s: float = 60, keep: bool = False,
         rotate_mib: float = 0, kill: bool = False, up_args: tuple[str, ...] = (),
         up_env: tuple[str, ...] = ()) -> dict[str, float]:
    import clickhouse_connect

    import soak_store  # bench/, next to this script

    from driftline.sdk import Monitor, SdkSettings

    data_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    gated: GatedStack | None = None
    if rotate_mib:
        gated = GatedStack(data_dir, rotate_mib, kill=kill)
        up: Any = gated
        ports = {"clickhouse": gated.clickhouse_port}
        bootstrap = gated.gate.address
        print(f"gated stack (no `up`): topic rotation once the broker's RSS reaches {rotate_mib:,.0f} MiB")
    else:
        up, ports = start_up(data_dir, extra=up_args, env_extra=up_env)
        bootstrap = f"127.0.0.1:{ports['kafka']}"
        print(f"{' '.join(up_env)} `driftline up --no-dashboard {' '.join(up_args)}`".replace("  ", " ").strip())
    client = clickhouse_connect.get_client(host="127.0.0.1", port=ports["clickhouse"])
    features = {f"f{i}": i * 0.37 for i in range(20)}
    samples: list[dict[str, float]] = []
    try:
        # Warm-up: the collector's group needs a while to get its first records on Tansu.
        t_up = time.perf_counter()
        warm = Monitor(model="soak-warmup", settings=SdkSettings(kafka_bootstrap=bootstrap))
        warm.log(features, 0.5)
        warm.flush(30)
        wait_for(lambda: stored(client, "soak-warmup") >= 1, 180, "the first stored event", up)
        warm.close(5)
        print(f"stack up and storing after {time.perf_counter() - t_up:.1f} s; data dir {data_dir}")

        monitor = Monitor(model="soak", version="1",
                          settings=SdkSettings(kafka_bootstrap=bootstrap, queue_size=max(100_000, int(rate * 10)),
                                               batch_size=5000))
        logged = 0
        done = threading.Event()

        sampler_client = clickhouse_connect.get_client(host="127.0.0.1", port=ports["clickhouse"])

        def sample(t: float) -> None:
            procs = gated.processes() if gated else processes(up.pid)
            mem = {name: rss_mib(pid) for name, pid in procs.items()}
            total = sum(v for v in mem.values() if v == v)
            n_stored = stored(sampler_client, "soak")
            row = {"t": t, "logged": logged, "stored": n_stored, "total": total, **mem}
            samples.append(row)
            broker = mem.get("broker", float("nan"))
            share = broker / total if total else float("nan")
            per_event = (broker - samples[0].get("broker", broker)) * 2**20 / logged if logged and samples else 0
            parts = "  ".join(f"{name} {v:7.1f}" for name, v in mem.items())
            rot = (f" | rotations {gated.rotator.rotations} (skipped {gated.rotator.skipped})" if gated else "")
            print(f"[{t:6.0f} s] logged {logged:>9,} stored {n_stored:>9,} | RSS MiB: {parts} | total {total:7.1f}"
                  f" | broker share {share:5.1%} | broker +{per_event:5.0f} B/event{rot}", flush=True)
            text, detail = soak_store.line(procs.get("store"), sampler_client, data_dir)
            row.update({f"store.{k}": v for k, v in detail.items()})
            print(f"           {text}", flush=True)
            if len(samples) % 10 == 0:
                print(soak_store.report_disk(sampler_client, data_dir), flush=True)

        def sampler(t0: float) -> None:
            next_t = 0.0
            while not done.is_set():
                sample(time.perf_counter() - t0)
                next_t += report_s
                done.wait(max(0.0, t0 + next_t - time.perf_counter()))

        t0 = time.perf_counter()
        thread = threading.Thread(target=sampler, args=(t0,), daemon=True)
        thread.start()
        # Steady rate: log in 10 ms slices up to rate * elapsed.
        while logged < events:
            due = min(events, int(rate * (time.perf_counter() - t0)) + 1)
            while logged < due:
                monitor.log(features, 0.5, latency_ms=1.0)
                logged += 1
            time.sleep(0.01)
            if up.poll() is not None:
                raise SystemExit(f"`driftline up` exited with {up.returncode}; see {data_dir}/logs")
        log_s = time.perf_counter() - t0
        monitor.flush(120)
        dropped = monitor.stats().dropped_total
        monitor.close(10)
        deadline = time.monotonic() + 600
        while stored(client, "soak") < events - dropped and time.monotonic() < deadline and up.poll() is None:
            time.sleep(0.5)
        total_s = time.perf_counter() - t0
        done.set()
        thread.join(report_s + 30)
        sample(total_s)
        final = stored(client, "soak")
        print(soak_store.report_disk(client, data_dir))
        distinct = int(client.query("SELECT uniqExact(event_id) FROM driftline.predictions WHERE model = 'soak'")
                       .result_rows[0][0])
        if gated:
            r = gated.rotator
            print(f"rotations: {r.rotations} ({r.records_freed:,} records freed), skipped {r.skipped}; last: {r.last}; "
                  f"collector stop times {[round(x, 1) for x in gated.collector_stops]} s")
            t_stop = time.perf_counter()
            gated.stop()
            stop_s = time.perf_counter() - t_stop
        else:
            stop_s = stop_up(up)
    finally:
        if gated:
            gated.stop()
        elif up.poll() is None:
            stop_up(up, 60)
    first, last = samples[0], samples[-1]
    print(f"\nsoak: {events:,} events logged at {events / log_s:,.0f}/s (target {rate:,.0f}/s) in {log_s:.0f} s; "
          f"stored {final:,} rows, {distinct:,} distinct ({'all' if distinct == events else 'MISSING ' + str(events - distinct)}"
          f"; SDK dropped {dropped}) after {total_s:.0f} s; stopped {stop_s:.1f} s after SIGTERM")
    print("resident memory, first sample -> last sample (MiB; store.* from the store's own accounting):")
    for name in [k for k in last if k not in ("t", "logged", "stored")]:
        a, b = first.get(name, float("nan")), last[name]
        print(f"  {name:22s} {a:8.1f} -> {b:8.1f}  ({b - a:+8.1f})")
    if "broker" in last and "broker" in first:
        grow = (last["broker"] - first["broker"]) * 2**20 / max(1, events)
        print(f"  broker growth per event: {grow:.0f} B; broker share of the total at the end: "
              f"{last['broker'] / last['total']:.1%}")
    if not keep:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return {"stored": final, "events": events, "broker_mib_end": last.get("broker", float("nan")),
            "total_mib_end": last["total"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--rate", type=float, default=12_000, help="events per second (steady)")
    parser.add_argument("--report-s", type=float, default=60, help="seconds between memory lines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--rotate-mib", type=float, default=0,
                        help="instead of `up`: the embedded pieces behind a ProduceGate with topic rotation once "
                             "the broker's RSS reaches this many MiB (0: plain `driftline up`)")
    parser.add_argument("--up-arg", action="append", default=[], metavar="ARG",
                        help="passed on to `driftline up`, e.g. --up-arg=--broker-max-mib=64 (repeatable)")
    parser.add_argument("--up-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in `up`'s environment (after DRIFTLINE_* are dropped), e.g. "
                             "--up-env=DRIFTLINE_MEMORY_PROBE_DIR=/tmp/probe or MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--kill-collector", action="store_true",
                        help="with --rotate-mib: stop the collector with SIGKILL in a rotation (default SIGTERM)")
    a = parser.parse_args()
    _log_setup()
    main(a.events, a.rate, a.report_s, a.keep, a.rotate_mib, a.kill_collector, tuple(a.up_arg), tuple(a.up_env))
