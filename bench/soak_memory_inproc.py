"""What the collector's Python heap keeps, event after event: the soak's traffic through the
collector's own Pipeline (scrubber + writer + detector stage) in this process, with tracemalloc.

Run: python bench/soak_memory_inproc.py [--events 900000] [--chunk 150] [--rate 300]
No Kafka: soak-shaped events (model "soak", 20 numeric features, no labels, like bench_soak.py)
go through ``Pipeline.process`` in chunks of ``--chunk`` events (what the collector takes per
0.5 s batch at 300 events/s) against the embedded store, with ``Pipeline.tick`` after each chunk at
the event time (``--rate`` events per second of event time). tracemalloc starts after a warm-up
chunk; every ``--every`` events one line (traced MiB, RSS, gc objects) and at the two marks
(``--marks``, default the soak's minutes 10 and 50 at 300/s) a snapshot. At the end: the top
growth between the two snapshots by traceback, and the gc objects by type that grew.
The soak compressed in time: what grows per wall-clock second is not covered (bench_soak is).
``--no-store`` (a loaded machine): no store and no writer; the scrubber and the detector stage get
the decoded chunks directly, and the stage's ClickHouse client is a stand-in that accepts every
insert and finds nothing saved (the state it would save is still built, then dropped).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any


def soak_records(start: int, n: int, t0: float, rate: float) -> list:
    """``n`` single-event prediction records shaped like bench_soak's Monitor.log(features, 0.5)."""
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract.timestamps import format_timestamp
    from driftline.sdk.ids import uuid7

    features = {f"f{i}": i * 0.37 for i in range(20)}
    out = []
    for i in range(start, start + n):
        ev = {"schema_version": 1, "type": "prediction", "event_id": uuid7(),
              "timestamp": format_timestamp(int((t0 + i / rate) * 1e9)), "model": "soak", "model_version": "1",
              "features": features, "prediction": 0.5, "latency_ms": 1.0}
        out.append(RawRecord("driftline.predictions", "predictions", i % 4, i // 4, dumps(ev)))
    return out


class NullClient:
    """Accepts inserts, answers every query with no rows (``--no-store``)."""

    class _Empty:
        result_rows: list = []

    def insert(self, *args: object, **kwargs: object) -> None:
        pass

    def query(self, *args: object, **kwargs: object) -> "NullClient._Empty":
        return self._Empty()


class Direct:
    """``Pipeline.process`` without a store: decode, scrub, observe (``--no-store``)."""

    def __init__(self, scrubber, stage) -> None:
        self.scrubber, self.stage = scrubber, stage

    def process(self, records: list) -> None:
        from driftline.collector.pipeline import Position
        from driftline.sdk.codec import loads

        events = [loads(r.value) for r in records]
        positions = [Position(r.topic, r.partition, r.offset) for r in records]
        if self.scrubber is not None:
            events = self.scrubber.scrub_batch(events)
        self.stage.observe(events, positions, frozenset())

    def tick(self, now_s: float) -> None:
        self.stage.tick(now_s)


def main(events: int, chunk: int, rate: float, every: int, marks: tuple[int, int], frames: int,
         no_store: bool = False, max_pending: int = 0) -> None:
    from prometheus_client import CollectorRegistry

    from driftline.collector.config import CollectorSettings
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.memprobe import malloc_stats, rss_bytes
    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.collector.wiring import build_scrubber
    from driftline.detectors.stage import build_observers

    tmp = Path(tempfile.mkdtemp(prefix="soak-mem-"))
    store = None if no_store else start_chstore(tmp / "ch")
    snaps: dict[int, tuple[Path, Counter]] = {}  # on disk: a snapshot held here would count in gc
    config = None
    if max_pending:  # the defaults of an unconfigured model, with a smaller label-join cap
        config = tmp / "detectors.yaml"
        config.write_text(f'model: "*"\nreference: {{source: first_events}}\nconcept: {{max_pending: {max_pending}}}\n')
    try:
        reg = CollectorRegistry()
        scrubber = build_scrubber(CollectorSettings(), reg, env={})
        pipe: Any
        if store is None:
            stage = build_observers(config, NullClient(), registry=reg)
            pipe = Direct(scrubber, stage[0])
        else:
            client = connect(store.url, retry_for_s=30)
            migrate(client)
            stage = build_observers(config, client, registry=reg)
            pipe = Pipeline(ClickHouseWriter(client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                            scrubber=scrubber, observers=stage, max_batch_events=25_000)
        t0 = time.time() - events / rate  # event time ends about now
        t_start = time.perf_counter()
        pipe.process(soak_records(0, chunk, t0, rate))  # warm-up: the model is added, spaCy runs once
        gc.collect()
        gc.freeze()  # as the collector does after start-up (app.tune_gc)
        gc.set_threshold(50_000, 20, 100)
        print(f"store, scrubber and stage ready, first chunk stored: {time.perf_counter() - t_start:.0f} s", flush=True)
        tracemalloc.start(frames)
        wall0 = time.perf_counter()
        done = chunk
        while done < events:
            pipe.process(soak_records(done, chunk, t0, rate))
            done += chunk
            pipe.tick(t0 + done / rate)
            if done % every < chunk or done in marks or any(done - chunk < m <= done for m in marks):
                counts = Counter(type(o).__qualname__ for o in gc.get_objects())
                traced = tracemalloc.get_traced_memory()[0]
                mall = malloc_stats()
                print(f"{done:>9,} events ({done / rate / 60:5.1f} soak min, {time.perf_counter() - wall0:6.0f} s): "
                      f"traced {traced / 2**20:7.1f} MiB  rss {rss_bytes() / 2**20:7.1f} MiB  "
                      f"malloc in use {mall.get('in_use', 0) / 2**20:6.1f} free {mall.get('free', 0) / 2**20:6.1f} MiB  "
                      f"gc objects {sum(counts.values()):>9,}", flush=True)
                for m in marks:
                    if done - chunk < m <= done and m not in snaps:
                        tracemalloc.take_snapshot().dump(str(tmp / f"{m}.tracemalloc"))
                        snaps[m] = (tmp / f"{m}.tracemalloc", counts)
        pending = {name: len(s) for mon in stage[0].engine.monitors.values()
                   for name, s in zip(("preds", "labels", "shadow", "arms"), mon.stores)}
        print(f"pending joins at the end: {pending}")
    finally:
        if store is not None:
            store.stop()
    if len(snaps) == 2:
        (a, ca), (b, cb) = snaps[marks[0]], snaps[marks[1]]
        a, b = tracemalloc.Snapshot.load(str(a)), tracemalloc.Snapshot.load(str(b))
        print(f"\ntop growth by traceback, {marks[0]:,} -> {marks[1]:,} events:")
        for st in b.compare_to(a, "traceback")[:12]:
            print(f"  {st.size_diff / 2**20:+8.2f} MiB {st.count_diff:+9,} blocks (now {st.size / 2**20:7.2f} MiB)")
            for line in st.traceback.format()[-2 * min(frames, 4):]:
                print(f"        {line.strip()[:140]}")
        grown = sorted(((cb[k] - ca.get(k, 0), k) for k in cb), reverse=True)[:10]
        print("gc objects by type, growth: " + ", ".join(f"{k} {d:+,}" for d, k in grown))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=900_000)
    p.add_argument("--chunk", type=int, default=150)
    p.add_argument("--rate", type=float, default=300)
    p.add_argument("--every", type=int, default=60_000)
    p.add_argument("--marks", type=int, nargs=2, default=(180_000, 900_000))
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--no-store", action="store_true", help="no store or writer (see above)")
    p.add_argument("--max-pending", type=int, default=0,
                   help="concept.max_pending of the model (0: the default, 200,000): reach the cap sooner")
    a = p.parse_args()
    main(a.events, a.chunk, a.rate, a.every, tuple(a.marks), a.frames, a.no_store, a.max_pending)
