"""One numeric matrix per batch, shared by the drift histograms, the quality check and PCA (columns.py):
the detectors' rows and state equal those of events fed one at a time, whatever the batch holds."""

from __future__ import annotations

import random
from typing import Any

import pytest

from driftline.detectors import columns
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from tests.detectors.detector_streams import engine_state

FEATURES = 30


def _stream(n: int, odd: str, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        feats: dict[str, Any] = {f"f{k}": rng.gauss(0.8 if i > n // 2 and k < 4 else 0.0, 1.0 + k / 10)
                                 for k in range(FEATURES)}
        if i % 3 == 0:
            feats["f9"] = rng.randrange(-3, 4)  # ints among the floats: still the matrix
        if i > 600 and i % 113 == 0:  # now and then, after the reference, one event unlike the others
            if odd == "extra":
                feats["surprise"] = 1.0
            elif odd == "missing":
                del feats["f2"]
            elif odd == "bool":
                feats["f3"] = True
            elif odd == "string":
                feats["f4"] = "2.5"
            elif odd == "null":
                feats["f5"] = None
        ts = f"2026-03-01T10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 10:01d}00000Z"
        p = rng.random()
        out.append({"type": "prediction", "event_id": f"00000000-0000-7000-8000-{i:012d}", "timestamp": ts,
                    "model": "m", "model_version": "v1", "request_id": f"r{i}", "features": feats,
                    "prediction": {"1": p, "0": 1 - p}, "tags": {"region": ("eu", "us", "ap")[i % 3]}})
    return out


def _config(segments: bool) -> DetectorsConfig:
    cfg: dict[str, Any] = {"model": "m", "window": {"kind": "count", "size": 500}, "min_samples": 50,
                           "reference": {"source": "first_events", "first_events": 400}}
    if segments:
        cfg["segments"] = {"tags": ["region"]}
    return DetectorsConfig.from_mapping(cfg)


@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("odd", ["none", "extra", "missing", "bool", "string", "null"])
def test_batches_read_through_one_matrix_equal_one_event_at_a_time(odd: str, segments: bool) -> None:
    events = _stream(3000, odd)
    one = DetectorEngine(_config(segments))
    for ev in events:
        one.observe_prediction(ev)
    batched = DetectorEngine(_config(segments))
    for i in range(0, len(events), 400):
        batched.observe_many(events[i:i + 400])
    rows_one, rows_batched = one.poll(float("-inf")), batched.poll(float("-inf"))
    detectors = {r.detector for r in rows_one}
    assert {"data_drift", "quality", "multivariate.pca"} <= detectors
    assert any(r.drift for r in rows_one if r.detector == "data_drift" and r.feature == "f0")
    unexpected = [r for r in rows_one if r.statistic == "unexpected_feature"]
    assert bool(unexpected) == (odd == "extra")  # the quality check still sees a name outside the reference
    assert rows_batched == rows_one  # every statistic equal to the last bit
    assert engine_state(batched) == engine_state(one)  # and the open windows, PCA's kept rows included


def test_each_batch_builds_its_matrix_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three readers of the same features (drift histograms, quality, PCA), one conversion a batch."""
    built: list[int] = []
    real = columns._build

    def counting(rows: Any, names: tuple[str, ...]) -> Any:
        if names[0].startswith("f"):  # the features' matrix (prediction drift builds its own, of its outputs)
            built.append(len(rows))
        return real(rows, names)

    monkeypatch.setattr(columns, "_build", counting)
    eng = DetectorEngine(_config(False))
    events = _stream(2400, "none")
    for i in range(0, len(events), 400):
        eng.observe_many(events[i:i + 400])
    assert any(r.detector == "multivariate.pca" for r in eng.poll(float("-inf")))
    # The reference is the first 400 events; each later batch of 400 (cut at a window's close) is
    # converted once, not once per reader.
    assert sum(built) == len(events) - 400, built
