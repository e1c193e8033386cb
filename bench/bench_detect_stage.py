"""Cost of the collector's detector stage per event (20 numeric features), with state saves.

Run: python bench/bench_detect_stage.py [--events 100000] [--chunk 5000]
In-process against the embedded store (chDB over HTTP): the same stored chunks go through
``Pipeline.process`` without observers (baseline: decode + write) and with the detector stage
(observe + drift rows + per-model state after every chunk). Events look like the SDK's: 20
numeric features, a class-score prediction, a request id; every other prediction gets a label
(delayed by 2000 predictions), so joins, pending stores and state deltas all carry weight.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def _events(model: str, n: int) -> list[tuple[str, bytes]]:
    from driftline.sdk.codec import dumps
    from driftline.sdk.ids import uuid7

    rng = random.Random(0)
    t0 = time.time() - n / 100
    out, ids = [], []
    for i in range(n):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i / 100)) + f".{i % 100:02d}0000Z"
        eid = uuid7()
        ids.append(eid)
        p = rng.random()
        out.append(("predictions", dumps({
            "schema_version": 1, "type": "prediction", "event_id": eid, "timestamp": ts, "model": model,
            "model_version": "1", "request_id": uuid7(), "latency_ms": 2.0,
            "features": {f"f{k}": rng.gauss(0.5 if i > n // 2 and k == 0 else 0, 1) for k in range(20)},
            "prediction": {"1": p, "0": 1 - p}})))
        if i >= 2000 and i % 2 == 0:
            out.append(("labels", dumps({"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": ts,
                                         "model": model, "model_version": "1", "prediction_id": ids[i - 2000],
                                         "label": int(rng.random() < 0.7)})))
    return out


def _records(events: list[tuple[str, bytes]], chunk: int) -> list[list[object]]:
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.contract import BATCH_HEADER

    batches, offsets = [], {"predictions": 0, "labels": 0}
    for i in range(0, len(events), chunk):
        part = events[i:i + chunk]
        batch = []
        for role in ("predictions", "labels"):
            values = [v for r, v in part if r == role]
            for j in range(0, len(values), 500):  # SDK batch records of up to 500 events
                batch.append(RawRecord(f"b.{role}", role, 0, offsets[role], b"\n".join(values[j:j + 500]), [BATCH_HEADER]))
                offsets[role] += 1
        batches.append(batch)
    return batches


def main(events: int = 100_000, chunk: int = 5000) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.detectors.stage import build_stage
    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store.tables import migrate
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.config import DetectorsConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench-stage-"))
    store = start_chstore(tmp / "ch")
    try:
        client = connect(store.url)
        migrate(client)
        results = {}
        stage = None
        for name in ("baseline", "stage"):
            model = f"{name}-{uuid.uuid4().hex[:6]}"
            evs = _events(model, events)
            batches = _records(evs, chunk)
            reg = CollectorRegistry()
            observers = []
            if name == "stage":
                stage = build_stage(DetectorsConfig(), client, registry=reg)
                observers = [stage]
            pipe = Pipeline(ClickHouseWriter(client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                            observers=observers, max_batch_events=chunk)
            t0 = time.perf_counter()
            for b in batches:
                pipe.process(b)
            results[name] = (time.perf_counter() - t0, len(evs))
        assert stage is not None
        # The engine alone on the same events (no storage, no state): its share of the stage.
        from driftline.detectors.engine import DetectorEngine
        from driftline.sdk.codec import loads

        eng = DetectorEngine(DetectorsConfig())
        decoded = [loads(v) for _, v in _events("engine", events)]
        eng.ensure_model(DetectorsConfig().default_for("engine"))
        t0 = time.perf_counter()
        for e in decoded:
            (eng.observe_prediction if e["type"] == "prediction" else eng.observe_label)(e)
        engine_s = time.perf_counter() - t0
        m = stage.engine.monitors[next(iter(stage.engine.monitors))]
        model = m.cfg.model
        t0 = time.perf_counter()
        full = stage.engine.state_for(model)
        full_s = time.perf_counter() - t0
        saves = reg.get_sample_value("driftline_detector_state_save_seconds_count")
        save_s = reg.get_sample_value("driftline_detector_state_save_seconds_sum")
        save_bytes = reg.get_sample_value("driftline_detector_state_bytes_total")
    finally:
        store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    (base_s, n), (stage_s, n2) = results["baseline"], results["stage"]
    per_event_us = (stage_s - base_s) / n2 * 1e6
    print(f"Detector stage, {events} predictions of 20 numeric features + {n2 - events} delayed labels, "
          f"chunks of {chunk} events, embedded store (2 cores)")
    print(f"  pipeline without detectors {n / base_s:10,.0f} events/s")
    print(f"  pipeline with the stage    {n2 / stage_s:10,.0f} events/s")
    print(f"  stage cost                 {per_event_us:10.1f} us/event (engine alone {engine_s / n2 * 1e6:.1f} us/event)")
    print(f"  state saves                {saves:10.0f} (one per chunk), {save_s / saves * 1e3:.1f} ms and "
          f"{save_bytes / saves / 1024:.0f} KiB each on average")
    print(f"  full snapshot now          {len(full) / 1024:10.0f} KiB, built in {full_s * 1e3:.0f} ms "
          f"({len(m.pending_preds)} predictions awaiting labels, {len(m.pending_shadow)} awaiting a shadow)")
    print(f"  ratio with / without stage: {(n2 / stage_s) / (n / base_s):.2f}")
    return {"stage_us_per_event": per_event_us, "with_stage_events_per_s": n2 / stage_s,
            "without_events_per_s": n / base_s}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    main(args.events, args.chunk)
