"""Collector CPU per event at a wide model, this code against another checkout, in process.

    python bench/bench_wide_collector.py --baseline /path/to/other/checkout [--features 1000]
                                         [--events 10000] [--chunk 1667] [--rounds 3]

The collector as ``driftline up`` runs it, without Kafka: ``Pipeline.store`` of SDK batch records
(then the next batch observes the last one, as the consumer does) with the detector stage, against
the embedded store (chDB behind its HTTP interface), GC tuned as the collector tunes it. One model
of ``--features`` numeric features (a pool of 64 rows, as ``bench_fleet.py`` sends), a first-events
reference of 50, count windows of 500, batches of ``--chunk`` events (what a sustained load gives at
1,000 features). Reported: this process's CPU (the collector's threads; the store is another
process) and wall time per event, after a warm-up batch.

With ``--baseline`` (a checkout of the code to compare, e.g. ``git worktree add /tmp/base REV``)
the two run alternately, ``--rounds`` each, in this venv: ratios are this code / baseline. A
checkout from before ``Pipeline.store`` (4 Dec 2026) stores and observes each batch in turn, as its
consumer did.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _events(model: str, n: int, features: int) -> list[tuple[str, bytes]]:
    from driftline.sdk.codec import dumps
    from driftline.sdk.ids import uuid7

    rng = random.Random(0)
    pool = [{f"f{k}": rng.gauss(0, 1) for k in range(features)} for _ in range(64)]
    t0 = time.time() - n / 100
    out = []
    for i in range(n):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i / 100)) + f".{i % 100:02d}0000Z"
        row = pool[i % 64]
        out.append(("predictions", dumps({
            "schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": ts, "model": model,
            "model_version": "1", "request_id": uuid7(), "latency_ms": 1.0, "features": row,
            "prediction": row["f0"] > 0})))
    return out


def measure(features: int, events: int, chunk: int) -> dict[str, float]:
    """One run of the code importable as ``driftline``: µs per event."""
    from bench_detect_stage import _records
    from prometheus_client import CollectorRegistry

    from driftline.collector.app import tune_gc
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.stage import build_stage

    tmp = Path(tempfile.mkdtemp(prefix="bench-wide-"))
    store = start_chstore(tmp / "ch")
    try:
        client = connect(store.url)
        migrate(client)
        tune_gc()
        cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 500},
                                            "min_samples": 50,
                                            "reference": {"source": "first_events", "first_events": 50}})
        reg = CollectorRegistry()
        pipe = Pipeline(ClickHouseWriter(client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                        observers=[build_stage(cfg, client, registry=reg)], max_batch_events=chunk)
        batches = _records(_events(f"wide-{uuid.uuid4().hex[:6]}", events + 2 * chunk, features), chunk)
        for b in batches[:2]:  # the reference, the imports, the first windows
            pipe.process(b)
        import gc

        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        if hasattr(pipe, "store"):
            for b in batches[2:]:
                pipe.store(b)  # observes the batch before while this one is stored, as the consumer runs it
            pipe.observe_stored()
        else:  # a checkout from before 4 Dec: one batch stored, then observed
            for b in batches[2:]:
                pipe.process(b)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        n = sum(len(r.value.split(b"\n")) for b in batches[2:] for r in b)
    finally:
        store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"cpu_us": 1e6 * cpu / n, "wall_us": 1e6 * wall / n, "events": n}


def _run(checkout: Path | None, args: argparse.Namespace) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    link = None
    if checkout is not None:  # a directory named driftline pointing at the checkout, first on the path
        link = Path(tempfile.mkdtemp(prefix="bench-wide-base-"))
        (link / "driftline").symlink_to(checkout.resolve())
        env["PYTHONPATH"] = str(link)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", "--features", str(args.features), "--events",
                              str(args.events), "--chunk", str(args.chunk)], env=env, capture_output=True,
                             text=True, check=True, timeout=1800)
    finally:
        if link is not None:
            shutil.rmtree(link, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="a checkout of the code to compare against")
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=1667)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.features, args.events, args.chunk)))
        return
    print(f"Collector in process, {args.features} numeric features, {args.events} events in batches of "
          f"{args.chunk}, count windows of 500 (µs per event)")
    ratios = []
    for r in range(args.rounds):
        order = [None, args.baseline] if r % 2 == 0 else [args.baseline, None]
        got = {}
        for which in order:
            if which is None or args.baseline is not None:
                got["base" if which is not None else "this"] = _run(which, args)
        this = got["this"]
        line = f"  round {r + 1}: this code cpu {this['cpu_us']:7.0f} wall {this['wall_us']:7.0f}"
        if "base" in got:
            base = got["base"]
            ratios.append((this["cpu_us"] / base["cpu_us"], this["wall_us"] / base["wall_us"]))
            line += (f" | baseline cpu {base['cpu_us']:7.0f} wall {base['wall_us']:7.0f} | ratio cpu "
                     f"{ratios[-1][0]:.3f} wall {ratios[-1][1]:.3f}")
        print(line, flush=True)
    if ratios:
        print(f"  median ratio (this / baseline): cpu {statistics.median(r[0] for r in ratios):.3f}, "
              f"wall {statistics.median(r[1] for r in ratios):.3f} over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
