"""A regressor's performance estimator fitted on the stream survives a collector restart: the
detector stage (``Pipeline`` + ``DetectorStage``, as ``driftline collector`` runs them) against the
real store, stopped after the loss model was fitted on the first labelled predictions, and a new
stage that loads the model's state from ClickHouse. The ``performance_estimates`` it writes are
those of an uninterrupted run, and it never fits again."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import pytest

from tests.detectors.stage_kit import stage_pipeline

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 2, 2, tzinfo=dt.timezone.utc)
N, LAG = 1600, 200  # predictions; a label for 60 % of them, LAG predictions later
CONFIG = {"model": "*", "window": {"kind": "count", "size": 250}, "min_samples": 50,
          "reference": {"source": "first_events", "first_events": 300},
          "performance_estimation": {"reference_labels": 300, "min_labels": 200}}


def _ts(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _events(model: str) -> list[dict[str, Any]]:
    """A regressor whose error grows with |x|, its delayed labels in the order they are produced."""
    from driftline.sdk.ids import uuid7

    rng = random.Random(3)
    preds: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    truth: dict[int, float] = {}
    for i in range(N):
        x, z = rng.gauss(0, 1), rng.gauss(0, 1)
        pred = 2 * x + z
        truth[i] = pred + rng.gauss(0, 0.5 + abs(x))
        preds.append({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": _ts(i),
                      "model": model, "model_version": "1", "features": {"x": x, "z": z, "plan": "a"},
                      "prediction": pred, "status": "ok"})
        out.append(preds[-1])
        j = i - LAG
        if j >= 0 and rng.random() < 0.6:
            out.append({"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": _ts(i + 0.5),
                        "model": model, "model_version": "1", "prediction_id": preds[j]["event_id"],
                        "label": truth[j]})
    return out


def _records(model: str, topic: str) -> list[Any]:
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER, BY_TYPE

    offsets = {"predictions": 0, "labels": 0}
    out = []
    for e in _events(model):
        role = BY_TYPE[e["type"]].role
        out.append(RawRecord(f"{topic}.{role}", role, 0, offsets[role], dumps(e), [BATCH_HEADER]))
        offsets[role] += 1
    return out


def _estimates(ch_client: Any, model: str) -> list[tuple[Any, ...]]:
    rows = ch_client.query(
        "SELECT window_start, metric, method, estimate, lower, upper, realised, labelled, n "
        "FROM driftline.performance_estimates FINAL WHERE model = %(m)s ORDER BY window_start, metric",
        parameters={"m": model}).result_rows
    return [tuple(r) for r in rows]


def test_dle_fitted_on_the_stream_is_reloaded_after_a_restart(ch_client: Any) -> None:
    from driftline.detectors.config import DetectorsConfig

    cfg = DetectorsConfig.from_mapping(CONFIG)
    tag = uuid.uuid4().hex[:6]

    def pipeline() -> tuple[Any, Any]:
        return stage_pipeline(cfg, ch_client, max_batch_events=200)

    straight, _ = pipeline()
    recs = _records(f"st-{tag}", f"st{tag}")
    for i in range(0, len(recs), 200):
        straight.process(recs[i:i + 200])

    model = f"rs-{tag}"
    recs = _records(model, f"rs{tag}")
    half = len(recs) // 2
    first, stage = pipeline()
    for i in range(0, half, 200):
        first.process(recs[i:i + 200])
    fitted = stage.engine.monitors[model].estimation.fitted["1"]
    assert fitted["method"] == "dle" and fitted["features"] == ["x", "z"] and fitted["labelled"] == 300
    # A new process: the model's state, the loss model with it, comes back from ClickHouse.
    second, stage2 = pipeline()
    for i in range(half, len(recs), 200):
        second.process(recs[i:i + 200])
    assert stage2.engine.monitors[model].estimation.fitted["1"] == fitted
    stage2.close()

    want = _estimates(ch_client, f"st-{tag}")
    got = _estimates(ch_client, model)
    assert got == want
    assert {r[2] for r in got} == {"dle"} and {r[1] for r in got} == {"mae", "rmse"}
    # estimated before the labels, graded once they came
    assert len([r for r in got if r[3] is not None and r[6] is not None]) >= 6
