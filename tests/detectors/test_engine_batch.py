"""``DetectorEngine.observe_many`` (the collector's batched path) equals one call per event, bit for bit."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest

from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine


def _stream(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Predictions with 20 numeric features, a categorical one, tags, odd values now and then,
    shadows for some requests and labels for half of the predictions, interleaved."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    ids: list[str] = []
    for i in range(n):
        eid = f"00000000-0000-7000-8000-{i:012d}"
        ids.append(eid)
        feats: dict[str, Any] = {f"f{k}": rng.gauss(1.0 if i > n // 2 and k < 3 else 0.0, 1.0) for k in range(20)}
        feats["plan"] = rng.choice(["free", "pro", "team"] + (["enterprise"] if i > n // 2 else []))
        odd = i % 97
        if odd == 1:
            feats["f3"] = None
        elif odd == 2:
            feats["f4"] = float("nan")
        elif odd == 3:
            feats["f5"] = "oops"
        elif odd == 4:
            feats["f6"] = True
        elif odd == 5:
            del feats["f7"]
        elif odd == 6:
            feats["surprise"] = 1
        elif odd == 7:
            feats["f8"] = 10**6  # far out of range: the overflow bin
        ts = f"2026-03-01T10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 10:01d}00000Z"
        p = rng.random()
        out.append({"type": "prediction", "event_id": eid, "timestamp": ts, "model": "m", "model_version": "v1",
                    "variant": "primary", "request_id": f"r{i}", "features": feats,
                    "prediction": {"1": p, "0": 1 - p}, "tags": {"region": rng.choice(["eu", "us"])}})
        if i % 5 == 0:
            q = min(1.0, p + (0.3 if i > n // 2 else 0.0))
            out.append({"type": "prediction", "event_id": f"00000000-0000-7000-9000-{i:012d}", "timestamp": ts,
                        "model": "m", "model_version": "v2", "variant": "shadow", "request_id": f"r{i}",
                        "features": feats, "prediction": {"1": q, "0": 1 - q}})
        if i >= 300 and i % 2 == 0:
            out.append({"type": "label", "event_id": f"00000000-0000-7000-a000-{i:012d}", "timestamp": ts,
                        "model": "m", "model_version": "v1", "prediction_id": ids[i - 300],
                        "label": str(int(rng.random() < 0.7))})
    return out


def _config() -> DetectorsConfig:
    return DetectorsConfig.from_mapping({
        "model": "m", "window": {"kind": "count", "size": 500}, "min_samples": 50,
        "reference": {"source": "first_events", "first_events": 800},
        "segments": {"tags": ["region"]}})


def _state(eng: DetectorEngine) -> dict[str, Any]:
    doc = json.loads(zlib.decompress(eng.state_for("m")))
    refs = doc["monitor"]["references"]
    for v, ref in refs.items():  # built from the same events, stamped with the wall clock
        refs[v] = {k: x for k, x in json.loads(ref).items() if k != "created_at"}
    return doc


@pytest.mark.parametrize("chunk", [1, 7, 256, 5000])
def test_observe_many_equals_one_call_per_event(chunk: int) -> None:
    events = _stream(4000)
    one = DetectorEngine(_config())
    for ev in events:
        {"prediction": one.observe_prediction, "label": one.observe_label}[ev["type"]](ev)
    batched = DetectorEngine(_config())
    for i in range(0, len(events), chunk):
        batched.observe_many(events[i:i + chunk])
    rows_one, rows_batched = one.poll(float("-inf")), batched.poll(float("-inf"))
    assert len(rows_one) > 500  # windows closed, with drift, quality and concept rows
    assert {r.detector for r in rows_one} >= {"data_drift", "quality", "prediction_drift", "performance"}
    assert any(r.drift for r in rows_one if r.detector == "data_drift")
    assert rows_batched == rows_one  # every statistic equal to the last bit
    assert _state(batched) == _state(one)  # and so are the open windows' counts and sums
