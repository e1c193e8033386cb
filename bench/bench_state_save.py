"""Cost of saving detector state per event, as the number of models a chunk touches grows.

Run: python bench/bench_state_save.py [--models 1,100,1000] [--chunks 6] [--chunk 5000]
In process, no store: N models (20 numeric features, 5 segment values, every model past its
reference) share chunks of ``--chunk`` prediction events; after each chunk every touched model's
state is built as the collector saves it (``state_for(model, delta=True)`` after one full
snapshot, then ``mark_saved``). Reports CPU µs and compressed bytes of state per event, and
their ratios to one model. The insert itself is the store's cost (bench_fleet.py measures it).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="1,100,1000")
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args()
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
