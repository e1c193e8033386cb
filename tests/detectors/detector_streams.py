"""Synthetic prediction/label streams with known change points, for the detector tests."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any, Callable

T0 = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)


def uid(i: int, kind: int = 0) -> str:
    return f"00000000-0000-7000-{8000 + kind:04x}-{i:012x}"


def ts(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def prediction(i: int, features: dict[str, Any], pred: Any, *, t: float | None = None,
               model: str = "m", version: str = "v1", variant: str = "primary",
               request_id: str | None = None, tags: dict[str, str] | None = None,
               latency_ms: float | None = None, status: str = "ok") -> dict[str, Any]:
    ev = {"schema_version": 1, "type": "prediction", "event_id": uid(i, 1 if variant == "shadow" else 0),
          "timestamp": ts(i if t is None else t), "model": model, "model_version": version,
          "variant": variant, "features": features, "prediction": pred, "status": status}
    if request_id:
        ev["request_id"] = request_id
    if tags:
        ev["tags"] = tags
    if latency_ms is not None:
        ev["latency_ms"] = latency_ms
    return ev


def label(i: int, prediction_id: str, value: Any, *, t: float, model: str = "m") -> dict[str, Any]:
    return {"schema_version": 1, "type": "label", "event_id": uid(i, 2), "timestamp": ts(t),
            "model": model, "prediction_id": prediction_id, "label": value}


def features_stream(n: int, change_at: int, before: Callable[[random.Random], dict[str, Any]],
                    after: Callable[[random.Random], dict[str, Any]], seed: int = 0,
                    start: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        f = before(rng) if i < change_at else after(rng)
        out.append(prediction(i, f, 1 if f.get("x", 0) > 0 else 0))
    return out


def base_features(rng: random.Random) -> dict[str, Any]:
    return {"x": rng.gauss(0, 1), "y": rng.gauss(10, 2), "plan": rng.choices("abc", (0.6, 0.3, 0.1))[0],
            "flag": rng.random() < 0.2, "n": rng.randint(0, 5)}


def engine_state(eng: Any, model: str = "m") -> dict[str, Any]:
    """A DetectorEngine's saved state of ``model`` as JSON, its references' wall-clock stamps left out
    (two engines that saw the same events compare equal)."""
    from driftline.detectors.journal import inflate

    doc = json.loads(inflate(eng.state_for(model)))
    refs = doc["monitor"]["references"]
    for v, ref in refs.items():  # built from the same events, stamped with the wall clock
        refs[v] = {k: x for k, x in json.loads(ref).items() if k != "created_at"}
    return doc
