"""What a detector-state record costs by its codec: the collector's CPU to compress it and the
store's CPU to take it, per record and per event (issue 17).

Run: python bench/bench_state_codec.py [--events 5,10,20,40] [--rounds 3] [--inserts 10]

A fleet model's record per batch is its events of that batch (``detectors/journal.events_blob``):
with 1,000 models, ~1,000 such records per insert. For each size (events of 20 features, shaped as
the SDK writes them, every event distinct) and codec (an LZ4 block, zstd level 1, zlib level 1: the
three ``journal`` has written), this measures

* **compress**: CPU µs to compress the record's JSON, in this process (best of 5 repeats);
* **store**: CPU µs of the embedded store (chDB behind its HTTP front, its own process, as
  ``driftline up`` runs it) per record, for ``--inserts`` inserts of 1,000 records through
  ``detectors.sink.save_records`` into a fresh store, including 3 s of its background merges after;
  the median over ``--rounds``, codecs interleaved with their order reversed every other round.

Both sides together say which codec is cheaper per record; the store's side grows with the bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import cramjam
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import _cpu_s  # noqa: E402

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": lambda b: b"LZ4B" + bytes(cramjam.lz4.compress_block(b)),
    "zstd1": lambda b: bytes(cramjam.zstd.compress(b, level=1)),
    "zlib1": lambda b: zlib.compress(b, 1),
}
MODELS = 1000


def record_json(n: int, seed: int) -> bytes:
    """An events record of ``n`` distinct SDK-shaped predictions (20 numeric features)."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        eid = (f"01a23be8-{rng.getrandbits(16):04x}-7{rng.getrandbits(12):03x}-8{rng.getrandbits(12):03x}-"
               f"{rng.getrandbits(48):012x}")
        feats = {f"f{k}": rng.gauss(0, 1) for k in range(20)}
        events.append({"schema_version": 1, "event_id": eid, "timestamp": f"2026-12-03T12:{i % 60:02d}:04.914299Z",
                       "model": "fleet-0001", "type": "prediction", "model_version": "1", "variant": "primary",
                       "request_id": eid, "features": feats, "prediction": feats["f0"] > 0, "latency_ms": 1.0,
                       "status": "ok", "error": None, "tags": {}})
    return orjson.dumps({"version": 1, "model": "fleet-0001", "kind": "events", "events": events})


def compress_us(fn: Callable[[bytes], bytes], data: bytes) -> float:
    best = float("inf")
    for _ in range(5):
        reps = 200
        t = time.thread_time()
        for _ in range(reps):
            fn(data)
        best = min(best, (time.thread_time() - t) / reps * 1e6)
    return best


def store_us(blobs: list[bytes], inserts: int) -> float:
    """Store CPU µs per record for ``inserts`` inserts of MODELS records drawn from ``blobs``."""
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store import tables
    from driftline.collector.store.client import connect
    from driftline.detectors import sink

    tmp = tempfile.mkdtemp(prefix="bench-state-codec-")
    try:
        with start_chstore(tmp) as store:
            ch = connect(store.url)
            tables.migrate(ch)
            t0 = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)
            cpu0 = _cpu_s(store.pid)
            for i in range(inserts):
                sink.save_records(ch, [sink.StateRecord(f"fleet-{m:04d}", f"delta:{i % 64:02d}",
                                                        blobs[(m + i) % len(blobs)], {"seq": i + 1, "kind": "events"},
                                                        t0 + dt.timedelta(seconds=i)) for m in range(MODELS)])
            time.sleep(3)  # its background merges are part of the cost
            return (_cpu_s(store.pid) - cpu0) / (inserts * MODELS) * 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default="5,10,20,40", help="events per record, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inserts", type=int, default=10)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for n in (int(x) for x in args.events.split(",")):
        raws = [record_json(n, seed) for seed in range(16)]
        names = list(CODECS)
        comp = {c: compress_us(CODECS[c], raws[0]) for c in names}
        size = {c: statistics.mean(len(CODECS[c](r)) for r in raws) for c in names}
        store: dict[str, list[float]] = {c: [] for c in names}
        for r in range(args.rounds):
            for c in (names if r % 2 == 0 else names[::-1]):
                store[c].append(store_us([CODECS[c](raw) for raw in raws], args.inserts))
        for c in names:
            s = statistics.median(store[c])
            rows.append((n, len(raws[0]), c, size[c], comp[c], s, min(store[c]), max(store[c])))
            print(f"{n} events: {c} done", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| events per record | JSON bytes | codec | record bytes | compress µs | store µs (range) "
          "| together µs | per event µs |")
    print("|---|---|---|---|---|---|---|---|")
    for n, raw, c, size, comp, s, lo, hi in rows:
        print(f"| {n} | {raw:,} | {c} | {size:,.0f} | {comp:.1f} | {s:.1f} ({lo:.1f}–{hi:.1f}) | {comp + s:.1f} "
              f"| {(comp + s) / n:.2f} |")


if __name__ == "__main__":
    main()
