"""A fleet, not a model: many models, many features, many segments through `driftline up`.

Run: python bench/bench_fleet.py [--grid full|reduced] [--events 40000] [--budget-mb 256] [--repeats N]
Each run starts a fresh `driftline up --no-dashboard` (temporary data dir, free ports), sends
events straight to Kafka with the SDK (one Client, one Monitor per model), and measures:

* a warm-up: every model's first-events reference (``--ref-events`` each, all models in the first
  chunks: with 1,000 models, 1,000 new model names arrive in one chunk) — its wall time is the
  "no stall" check, and the collector log is searched for "detector failed on a batch";
* then ``--events`` predictions round-robin over the models (fewer for 1,000 features, the same
  feature values, but at least ``--wide-min-events``): stored events/s over the whole phase and in
  steady state (``steady_rate``: from the insert that passed 10 % of the events to the one that passed
  90 %), CPU per event of the collector and of the store
  (/proc/PID/stat), state bytes written per event (``driftline_detector_state_bytes_total``),
  ``/metrics`` series, resident memory (VmRSS) of each process at the end;

all as ratios to the single-model 20-feature run of the same invocation; with ``--repeats``, each of
issue 17's targets is judged by the median of the rounds' ratios and its sign-test interval (met,
not met, or undecided at that number of rounds: ``verdicts``). The detectors run with
``window.size`` 500, a first-events reference of ``--ref-events``, segments from the tag ``shop``,
``DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB`` = ``--budget-mb`` (1,024 by default: the budget counts every
model's detector state too, ~0.45 MiB per 20-feature model, and this bench sends no labels, so
its pending joins grow with the events; 1,024 keeps every run free of evictions, as the figures
before the state was budgeted were) and ``DRIFTLINE_DETECTOR_PARK_AFTER_S`` = ``--park-after-s``;
``--active K`` sends the measured events to K models at a time, block after block, so that the
others are idle (the budget's unloading of idle models).
The collector's own account of the budget is reported too: its estimate of the resident models'
state (``driftline_detector_state_resident_bytes``), the pending joins, the models unloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import _cpu_s  # noqa: E402
from bench_soak import processes, rss_mib, stop_up, wait_for  # noqa: E402
from sidecar_verdict import median_interval, verdict  # noqa: E402

FULL = [(1, 20, 1), (100, 20, 1), (1000, 20, 1), (1, 1000, 1), (1, 20, 50)]
REDUCED = [(1, 20, 1), (100, 20, 1), (1000, 20, 1)]  # a busy machine: the model axis only


def _config(path: Path, ref_events: int, segments: int) -> Path:
    doc = {"model": "*", "window": {"kind": "count", "size": 500}, "min_samples": 50,
           "reference": {"source": "first_events", "first_events": ref_events}}
    if segments > 1:
        doc["segments"] = {"tags": ["shop"], "max_segments": segments}
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def _start(data_dir: Path, config: Path, budget_mb: float, park_after_s: float,
           batch_timeout_s: float | None = None) -> tuple[subprocess.Popen, dict[str, int]]:
    from driftline.collector.embedded.broker import free_port, port_open

    ports = {"kafka": free_port(), "clickhouse": free_port(), "metrics": free_port()}
    cmd = [sys.executable, "-m", "driftline.cli", "up", "--no-dashboard", "--data-dir", str(data_dir),
           "--kafka-port", str(ports["kafka"]), "--clickhouse-port", str(ports["clickhouse"]),
           "--metrics-port", str(ports["metrics"]), "--detectors-config", str(config),
           # no topic rotation: it restarts the collector (a new pid, its CPU counted from zero), which
           # broke a run once (5 Dec); the runs are bounded, the broker's memory with them
           "--broker-max-mib", "0"]
    data_dir.mkdir(parents=True, exist_ok=True)
    out = open(data_dir / "up.out", "ab")  # noqa: SIM115 - owned by the child
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB"] = str(budget_mb)
    env["DRIFTLINE_DETECTOR_PARK_AFTER_S"] = str(park_after_s)
    env["DRIFTLINE_FEATURE_ROLL_S"] = "0"  # the run rolls its hour itself, counted (run())
    if batch_timeout_s is not None:
        env["DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S"] = str(batch_timeout_s)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    wait_for(lambda: port_open("127.0.0.1", ports["kafka"]) and port_open("127.0.0.1", ports["clickhouse"])
             and port_open("127.0.0.1", ports["metrics"]), 180, "the stack's ports", proc)
    return proc, ports


def _metrics(port: int) -> tuple[int, dict[str, float]]:
    """(series count, {sample name: summed value}) of the collector's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    series, sums = 0, {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series += 1
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            pass
    return series, sums


def _wait_idle(pid: int, *, busy_s: float = 0.05, every_s: float = 1.0, timeout_s: float = 300) -> None:
    """Until the process used less than ``busy_s`` of CPU in each of two ``every_s`` intervals in a
    row: the detector stage works through a stored chunk after the rows are visible, for seconds
    when 1,000 models arrive in one batch, so a fixed sleep let one phase's work land in the next."""
    deadline = time.monotonic() + timeout_s
    last, quiet = _cpu_s(pid), 0
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(every_s)
        now = _cpu_s(pid)
        quiet = quiet + 1 if now - last < busy_s else 0
        last = now


def _stored(client: Any) -> int:
    return int(client.query("SELECT count() FROM driftline.predictions").result_rows[0][0])


def _landings(ch: Any, proc: subprocess.Popen, t0: float, warm: int, events: int) -> list[tuple[float, int]]:
    """Wait for the measured events to be stored, noting when each insert landed: ``(seconds since
    t0, measured events stored)`` at every change of the count (polled every 20 ms), the last at
    ``events``."""
    out: list[tuple[float, int]] = []

    def all_stored() -> bool:
        n = _stored(ch) - warm
        if not out or n != out[-1][1]:
            out.append((time.perf_counter() - t0, n))
        return n >= events

    wait_for(all_stored, 900, "the measured events", proc, poll_s=0.02)
    return out


def steady_rate(landed: list[tuple[float, int]], events: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Events stored per second between the insert that took the count past ``lo`` of ``events``
    and the one that took it past ``hi``: the pipeline's throughput once every stage is busy,
    without the time the first events take to pass through it and the last inserts' wait.
    ``nan`` when one insert did both (too few inserts in the phase to tell).

    >>> steady_rate([(0.0, 0), (1.0, 10), (2.0, 50), (3.0, 90), (9.0, 100)], 100)
    40.0
    """
    a = next(p for p in landed if p[1] >= lo * events)
    b = next(p for p in landed if p[1] >= hi * events)
    return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")


def run(models: int, features: int, segments: int, *, events: int, ref_events: int, budget_mb: float,
        park_after_s: float = 300.0, active: int = 0, batch_timeout_s: float | None = None,
        pool_rows: int = 64) -> dict[str, Any]:
    from driftline.collector.store.client import connect
    from driftline.sdk import Client, Monitor, SdkSettings

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    proc, ports = _start(tmp / "data", _config(tmp / "detectors.yaml", ref_events, segments), budget_mb,
                         park_after_s, batch_timeout_s)
    rng = random.Random(0)
    pool = [{f"f{k}": rng.gauss(0, 1) for k in range(features)} for _ in range(pool_rows)]
    client = None
    done = False  # a failed run keeps its data dir (its logs) for a look; a finished one is removed
    kept = False  # ... unless its log shows a detector failure
    try:
        ch = connect(f"http://127.0.0.1:{ports['clickhouse']}")
        wait_for(lambda: _stored(ch) >= 0, 60, "the store")
        client = Client(SdkSettings(kafka_bootstrap=f"127.0.0.1:{ports['kafka']}", queue_size=500_000,
                                    batch_size=2000))
        mons = [Monitor(f"fleet-{m:04d}", "1", client=client) for m in range(models)]

        def send(n: int, start: int, active: int = 0) -> None:
            """``n`` events round-robin over the models; with ``active``, over ``active`` models at a
            time, block after block (each model busy in its block only, idle the rest of the run)."""
            blocks = models // active if active else 1
            per_block = -(-n // blocks)
            for k, i in enumerate(range(start, start + n)):
                tags = {"shop": f"s{i % segments}"} if segments > 1 else None
                s = pool[i % pool_rows]
                m = (k // per_block) * active + k % active if active else i % models
                mons[m].log(s, s["f0"] > 0, latency_ms=1.0, tags=tags)

        t0 = time.perf_counter()
        warm = models * (ref_events + 20)
        send(warm, 0)
        client.flush(300)
        wait_for(lambda: _stored(ch) >= warm, 900, "the warm-up events", proc)
        warm_s = time.perf_counter() - t0
        pids = processes(proc.pid)
        _wait_idle(pids["collector"])  # the detector stage trails the store: its work is the warm-up's
        cpu0 = {r: _cpu_s(pids[r]) for r in ("collector", "store")}
        _, m0 = _metrics(ports["metrics"])
        t0 = time.perf_counter()
        send(events, warm, active)
        client.flush(300)
        landed = _landings(ch, proc, t0, warm, events)
        took = landed[-1][0]
        _wait_idle(pids["collector"])  # ... and the measured events' detector work is theirs
        cpu = {r: _cpu_s(pids[r]) - cpu0[r] for r in cpu0}
        # The feature rollup is rolled once an hour is closed: the run's hour (warm-up and measured
        # events) rolled now, and the store's CPU for it until idle (the roll's merges, and any the
        # inserts left) counted in the measured events' share of the values rolled.
        try:
            from driftline.collector.store.feature_rolls import roll_pending
        except ImportError:  # a tree from before 5 Dec: its rollup filled by a view on every insert
            roll_cpu = 0.0
        else:
            roll0 = _cpu_s(pids["store"])
            roll_pending(ch, 0, 2**32)
            _wait_idle(pids["store"])
            roll_cpu = (_cpu_s(pids["store"]) - roll0) * events / (warm + events)
        cpu["store"] += roll_cpu
        now = processes(proc.pid)
        moved = [r for r in cpu0 if now.get(r) != pids[r]]
        if moved:  # a restarted process's CPU was not counted: the figures would be wrong, not just noisy
            raise RuntimeError(f"the {' and '.join(moved)} restarted during the measured phase (see {tmp / 'data'}): "
                               "its CPU cannot be measured; at high volumes the embedded broker's rotation does "
                               "that, so measure fewer events")
        series, m1 = _metrics(ports["metrics"])

        def grew(name: str) -> float:
            return m1.get(name, 0.0) - m0.get(name, 0.0)

        state = grew("driftline_detector_state_bytes_total")
        inserts = grew("driftline_collector_batch_events_count")
        rss = {r: rss_mib(p) for r, p in pids.items()}
        log = "".join(p.read_text(errors="replace") for p in (tmp / "data").rglob("*.log")) if (tmp / "data").exists() else ""
        for failure in ("detector failed on a batch", "could not be encoded"):  # bugs to find: the first traceback
            if failure in log:
                at = log.index(failure)
                print(f"  '{failure}' in the collector's log; the first:\n{log[at:at + 6000]}", file=sys.stderr)
                kept = True
        done = True
        return {"models": models, "features": features, "segments": segments, "events": events,
                "warmup_s": warm_s, "events_per_s": events / took,
                "steady_events_per_s": steady_rate(landed, events),
                "collector_us": 1e6 * cpu["collector"] / events, "store_us": 1e6 * cpu["store"] / events,
                "store_roll_us": 1e6 * roll_cpu / events,
                "state_bytes": state / events, "series": series, "rss": rss,
                "events_per_batch": events / inserts if inserts else float("nan"),
                "evicted": m1.get("driftline_label_join_evicted_total", 0.0),
                "budget_mb": budget_mb,
                "state_mib": m1.get("driftline_detector_state_resident_bytes", 0.0) / 2**20,
                "pending": m1.get("driftline_detector_pending_joins", 0.0),
                "parked": m1.get("driftline_detector_models_parked_total", 0.0),
                "resident": m1.get("driftline_detector_models_resident", 0.0),
                "loads": m1.get("driftline_detector_state_loads_total", 0.0),
                "stalls": log.count("detector failed on a batch"),
                "encode_errors": log.count("could not be encoded")}
    finally:
        if client is not None:
            client.shutdown(10)
        stop_up(proc)
        if done and not kept:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  run {'failed' if not done else 'logged a failure'}; its data and logs are in {tmp}",
                  file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=("full", "reduced"), default="full")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--ref-events", type=int, default=100)
    ap.add_argument("--budget-mb", type=float, default=1024.0)
    ap.add_argument("--park-after-s", type=float, default=300.0)
    ap.add_argument("--active", type=int, default=0,
                    help="measured events to this many models at a time, block after block (0: all models "
                         "round-robin); with a small --budget-mb and --park-after-s the idle ones leave memory")
    ap.add_argument("--only", help="runs as models:features:segments,... (the first is the baseline)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of the grid, its order reversed every other round; figures are medians "
                         "over the rounds and a ratio is the median of each round's ratio to its baseline")
    ap.add_argument("--wide-min-events", type=int, default=20_000,
                    help="at least this many measured events in a wide run (otherwise the same feature values as "
                         "the 20-feature run): enough inserts (~2,200 events each at 1,000 features) for a steady "
                         "rate, and a phase of ~20 s, not the ~2 s in which the pipeline's fill and drain weigh "
                         "a tenth of the rate")
    ap.add_argument("--pool", type=int, default=64,
                    help="distinct feature rows sent, cycled (64: each feature has 64 values, which the feature "
                         "rollup's bins hold in few rows; a large pool: values as varied as continuous data's)")
    ap.add_argument("--batch-timeout-s", type=float, default=None,
                    help="the collector's DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S (default: its own default)")
    args = ap.parse_args()
    grid = FULL if args.grid == "full" else REDUCED
    if args.only:
        grid = [tuple(int(x) for x in r.split(":")) for r in args.only.split(",")]  # type: ignore[misc]
    rounds: list[list[dict[str, Any]]] = []
    for k in range(max(1, args.repeats)):
        rows: list[dict[str, Any] | None] = [None] * len(grid)
        for i in (range(len(grid)) if k % 2 == 0 else reversed(range(len(grid)))):
            models, features, segments = grid[i]
            floor = args.wide_min_events if features > 20 else 2000
            n = max(floor, args.events * 20 // features)  # the same feature values per run, or the floor
            rows[i] = run(models, features, segments, events=n, ref_events=args.ref_events, budget_mb=args.budget_mb,
                          park_after_s=args.park_after_s, active=min(args.active, models),
                          batch_timeout_s=args.batch_timeout_s, pool_rows=args.pool)
            print(json.dumps({"round": k, **rows[i]}), flush=True)
        rounds.append(rows)  # type: ignore[arg-type]
    print(table(rounds))
    for line in verdicts(rounds, grid):
        print(line)


FIGURES = ("events_per_s", "steady_events_per_s", "collector_us", "store_us", "state_bytes")
# issue 17's targets: (figure, grid row as models:features:segments, most (or, negative, least) ratio).
# The event rate is judged in steady state (``steady_rate``); the rate over the whole phase, which
# counts the pipeline's fill and drain once per run however long the run, is judged beside it.
TARGETS = (("collector_us", (1000, 20, 1), 1.2), ("store_us", (1000, 20, 1), 1.3),
           ("steady_events_per_s", (1, 1000, 1), -0.05), ("events_per_s", (1, 1000, 1), -0.05))


def _ratio_text(v: float) -> str:
    return f"{v:.2f}x" if v >= 0.1 else f"{v:.3f}x"


def verdicts(rounds: list[list[dict[str, Any]]], grid: list[tuple[int, ...]]) -> list[str]:
    """Each target's ratio as the median over rounds (each round's run against that round's
    baseline, run next to it) with the median's sign-test interval (``sidecar_verdict``): met when
    the interval lies within the target, not met when wholly outside, else undecided."""
    out = []
    for figure, row, bound in TARGETS:
        i = grid.index(row) if row in grid else 0
        if i == 0:  # not run, or the baseline itself
            continue
        ratios = [rows[i][figure] / rows[0][figure] for rows in rounds
                  if rows[0].get(figure) and rows[i].get(figure) == rows[i].get(figure)]  # not nan
        if not ratios:
            continue
        # "at least 0.05x" is "the inverse at most 20x": one verdict function for both directions
        xs, target = (ratios, bound) if bound > 0 else ([1 / r for r in ratios], -1 / bound)
        lo, hi, cover = median_interval(ratios)
        med = statistics.median(ratios)
        x = _ratio_text
        sense = "<=" if bound > 0 else ">="
        out.append(f"{figure} at {row[0]:,} models, {row[1]:,} features, {row[2]} segments: median ratio "
                   f"{x(med)} over {len(ratios)} rounds, interval {x(lo)}-{x(hi)} (covers the median "
                   f"with probability {100 * cover:.1f} %); target {sense} {x(abs(bound))}: "
                   f"{verdict(xs, target).upper()}")
    return out


def table(rounds: list[list[dict[str, Any]]]) -> str:
    """The markdown table: per grid row, the median of each figure over the rounds, and its ratio to
    the baseline (the first row) as the median of the rounds' ratios (with their range when > 1)."""
    out = ["| models | features | segments | events/s (ratio) | steady events/s (ratio) | collector µs/event (ratio) "
           "| store µs/event (ratio) "
           "| state B/event (ratio) | /metrics series | collector RSS MiB | store RSS MiB | warm-up s | stalls "
           "| detector state MiB (est.) | pending joins | evicted | unloaded |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rounds[0]):
        runs = [rows[i] for rows in rounds]

        def cell(k: str) -> str:
            if any(k not in x for x in runs):  # a figure this tree's bench did not measure
                return "–"
            value = statistics.median(x[k] for x in runs)
            ratios = [x[k] / rows[0][k] for x, rows in zip(runs, rounds) if rows[0][k]]
            if not ratios:
                return f"{value:,.1f}"
            spread = f", {min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else ""
            return f"{value:,.1f} ({statistics.median(ratios):.2f}×{spread})"

        def med(get: Any) -> float:
            return statistics.median(get(x) for x in runs)

        out.append(f"| {r['models']:,} | {r['features']:,} | {r['segments']} | {cell('events_per_s')} "
                   f"| {cell('steady_events_per_s')} | {cell('collector_us')} | {cell('store_us')} "
                   f"| {cell('state_bytes')} "
                   f"| {med(lambda x: x['series']):,.0f} | {med(lambda x: x['rss'].get('collector', 0)):.0f} "
                   f"| {med(lambda x: x['rss'].get('store', 0)):.0f} | {med(lambda x: x['warmup_s']):.0f} "
                   f"| {sum(x['stalls'] for x in runs)} | {med(lambda x: x.get('state_mib', 0)):.0f} "
                   f"| {med(lambda x: x.get('pending', 0)):,.0f} | {med(lambda x: x.get('evicted', 0)):,.0f} "
                   f"| {med(lambda x: x.get('parked', 0)):,.0f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
