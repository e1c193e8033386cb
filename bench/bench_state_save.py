"""Cost of saving detector state per event, as the number of models a chunk touches grows.

Run: python bench/bench_state_save.py [--models 1,100,1000] [--chunks 6] [--chunk 5000]
     python bench/bench_state_save.py --versions 100 [--per-version 1000]
In process, no store: N models (20 numeric features, 5 segment values, every model past its
reference) share chunks of ``--chunk`` prediction events; after each chunk every touched model's
state is built as the collector saves it (``state_for(model, delta=True)`` after one full
snapshot, then ``mark_saved``). Reports CPU µs and compressed bytes of state per event, and
their ratios to one model. The insert itself is the store's cost (bench_fleet.py measures it).

``--versions N``: one model redeployed daily: version k is served on day k only (one one-day window
of ``--per-version`` events, the first half its reference: ``first_events``), beside a version
served every day; saved after each day (a full snapshot, then deltas). Run with
versions never retired and retired after the default idle week (``retire_version_after_s``), each
in a fresh process: versions held, the full state's compressed bytes, all bytes saved, and RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import subprocess
import sys
import time


def _events(models: list[str], n: int, start: int, rng: random.Random) -> list[dict[str, object]]:
    out = []
    for i in range(start, start + n):
        s = rng.random()
        out.append({"schema_version": 1, "type": "prediction", "event_id": f"00000000-0000-7000-8000-{i:012x}",
                    "timestamp": f"2026-11-24T00:{(i // 60) % 60:02d}:{i % 60:02d}Z", "model": models[i % len(models)],
                    "model_version": "v1", "features": {f"f{k}": rng.gauss(0, 1) for k in range(20)},
                    "prediction": {"1": s, "0": 1 - s}, "tags": {"shop": f"s{i % 5}"}})
    return out


def run(n_models: int, chunks: int, chunk: int) -> dict[str, float]:
    from driftline.detectors.config import DetectorsConfig
    from driftline.detectors.engine import DetectorEngine
    from driftline.detectors.reference import from_events

    cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "count", "size": 1000},
                                        "min_samples": 100, "segments": {"tags": ["shop"]}})
    eng = DetectorEngine(cfg)
    rng = random.Random(0)
    models = [f"m{k}" for k in range(n_models)]
    ref = from_events(_events(["r"], 2000, 10**9, rng), "r", "*")
    for m in models:
        eng.set_reference(dataclasses.replace(ref, model=m))
        eng.ensure_model(cfg.default_for(m))
    seconds = size = events = 0.0
    for c in range(chunks + 1):
        eng.observe_many(_events(models, chunk, c * chunk, rng))
        eng.poll(float("-inf"))
        t0 = time.process_time()
        nbytes = 0
        for m in sorted(eng.changed()):
            nbytes += len(eng.state_for(m, delta=c > 0))
            eng.mark_saved(m)
        if c > 0:  # the first save of each model is its full snapshot
            seconds += time.process_time() - t0
            size += nbytes
            events += chunk
    return {"us_per_event": 1e6 * seconds / events, "bytes_per_event": size / events}


DAY = 86_400.0


def _day(day: int, versions: list[str], n: int, rng: random.Random) -> list[dict[str, object]]:
    out = []
    for k in range(n):
        for v in versions:
            s = rng.random()
            t = day * DAY + 0.9 * DAY * k / n
            out.append({"schema_version": 1, "type": "prediction", "model": "m", "model_version": v,
                        "event_id": f"00000000-0000-7000-8000-{len(out) + day * 10**6:012x}",
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1.7e9 + t)),
                        "features": {f"f{j}": rng.gauss(0, 1) for j in range(20)},
                        "prediction": {"1": s, "0": 1 - s}, "tags": {"shop": f"s{k % 5}"}})
    return out


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_versions(n_versions: int, per_version: int, retire: bool) -> dict[str, float]:
    """One model, a new version a day (see the module notes); this process's figures at the end."""
    from driftline.detectors.config import RETIRE_VERSION_AFTER_S, DetectorsConfig
    from driftline.detectors.engine import DetectorEngine

    cfg = DetectorsConfig.from_mapping({"model": "m", "window": {"kind": "time", "duration_s": DAY, "grace_s": 0},
                                        "min_samples": 100, "segments": {"tags": ["shop"]},
                                        "reference": {"source": "first_events", "first_events": per_version // 2},
                                        "retire_version_after_s": RETIRE_VERSION_AFTER_S if retire else 0})
    rng = random.Random(0)
    eng = DetectorEngine(cfg)
    saved = 0
    t0 = time.process_time()
    for day in range(n_versions + 1):
        eng.observe_many(_day(day, ["live"] + ([f"v{day:03d}"] if day < n_versions else []), per_version, rng))
        eng.poll(float("-inf"))
        saved += len(eng.state_for("m", delta=day > 0))
        eng.mark_saved("m")
    cpu = time.process_time() - t0
    gc.collect()
    return {"versions_held": len(eng.monitors["m"].held_versions()), "full_state_bytes": len(eng.state_for("m")),
            "saved_bytes": saved, "rss_mib": _rss_mib(), "cpu_s": cpu}


def versions_main(args: argparse.Namespace) -> None:
    if args.child is not None:
        print(json.dumps(run_versions(args.versions, args.per_version, args.child == "retire")))
        return
    got = {}
    for mode in ("keep", "retire"):
        out = subprocess.run([sys.executable, __file__, "--versions", str(args.versions), "--per-version",
                              str(args.per_version), "--child", mode], check=True, capture_output=True, text=True)
        got[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base = got["keep"]
    print(f"{args.versions} versions x 1 window of {args.per_version:,} events, a version served every day beside them")
    print("| versions retired after | versions held | full state bytes (ratio) | bytes saved, all days (ratio) "
          "| RSS MiB (ratio) | CPU s (ratio) |\n|---|---|---|---|---|---|")
    for mode, r in got.items():
        print(f"| {'never' if mode == 'keep' else '7 days idle (default)'} | {r['versions_held']} | "
              f"{r['full_state_bytes']:,} ({r['full_state_bytes'] / base['full_state_bytes']:.2f}x) | "
              f"{r['saved_bytes']:,} ({r['saved_bytes'] / base['saved_bytes']:.2f}x) | "
              f"{r['rss_mib']:.0f} ({r['rss_mib'] / base['rss_mib']:.2f}x) | "
              f"{r['cpu_s']:.1f} ({r['cpu_s'] / base['cpu_s']:.2f}x) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="1,100,1000")
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--versions", type=int, default=0, help="one model, this many daily versions (see above)")
    ap.add_argument("--per-version", type=int, default=1000)
    ap.add_argument("--child", choices=("keep", "retire"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.versions:
        versions_main(args)
        return
    base = None
    print("| models | save µs/event | state bytes/event | ratio µs | ratio bytes |\n|---|---|---|---|---|")
    for n in (int(x) for x in args.models.split(",")):
        r = run(n, args.chunks, args.chunk)
        base = base or r
        print(f"| {n:,} | {r['us_per_event']:.1f} | {r['bytes_per_event']:.0f} | "
              f"{r['us_per_event'] / base['us_per_event']:.2f} | {r['bytes_per_event'] / base['bytes_per_event']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
