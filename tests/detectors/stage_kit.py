"""The collector's Pipeline with a DetectorStage on the real store, as the stage tests drive it."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any


def stage_pipeline(cfg: Any, ch_client: Any, *, max_batch_events: int, registry: Any = None,
                   **stage: Any) -> tuple[Any, Any]:
    """(Pipeline, DetectorStage) writing through ``ch_client``, its own metrics registry unless
    one is given, no dead letters; ``stage``: more arguments of ``build_stage``."""
    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline
    from driftline.collector.store.writer import ClickHouseWriter
    from driftline.detectors.stage import build_stage

    reg = CollectorRegistry() if registry is None else registry
    stage = build_stage(cfg, ch_client, registry=reg, **stage)
    return Pipeline(ClickHouseWriter(ch_client), CollectorMetrics(reg), send_dead_letters=lambda d: None,
                    observers=[stage], max_batch_events=max_batch_events), stage


# -- streams and reads shared by the stage tests ---------------------------------------------------
FEATURES = 20
T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)

_COLS = ("model, model_version, detector, feature, segment, window_start, window_end, statistic, value, "
         "p_value, threshold, drift, reference_size, current_size, details")


def _ts(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stream(model: str, n: int, *, shift_at: int, label_lag: int, seed: int = 1,
            labelled: int | None = None) -> list[dict[str, Any]]:
    """n predictions (x shifts by 1.5 sd at ``shift_at``) and a label for every other one of the
    first ``labelled`` (default: all), ``label_lag`` predictions later (delayed ground truth), in
    the order they are produced."""
    from driftline.sdk.ids import uuid7

    rng = random.Random(seed)
    preds, out = [], []
    for i in range(n):
        x = rng.gauss(1.5 if i >= shift_at else 0.0, 1.0)
        feats = {f"f{k}": rng.gauss(0, 1) for k in range(FEATURES - 2)}
        feats.update(x=x, plan=rng.choice(["a", "b", "c"]))
        p = round(1 / (1 + 2.718281828 ** -x), 6)
        preds.append({"schema_version": 1, "type": "prediction", "event_id": uuid7(), "timestamp": _ts(i),
                      "model": model, "model_version": "1", "request_id": f"r{i}", "features": feats,
                      "prediction": {"1": p, "0": round(1 - p, 6)}, "latency_ms": 3.0, "status": "ok"})
        out.append(preds[-1])
        j = i - label_lag
        if j >= 0 and j % 2 == 0 and (labelled is None or j < labelled):
            truth = int(rng.random() < 1 / (1 + 2.718281828 ** -preds[j]["features"]["x"]))
            out.append({"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": _ts(i + 0.5),
                        "model": model, "model_version": "1", "prediction_id": preds[j]["event_id"], "label": truth})
    return out



def _drift_rows(ch_client: Any, model: str) -> list[tuple[Any, ...]]:
    rows = ch_client.query(f"SELECT {_COLS} FROM driftline.drift_metrics FINAL WHERE model = %(m)s",
                           parameters={"m": model}).result_rows
    return sorted(r[1:] for r in rows)


def _count(ch_client: Any, table: str, model: str) -> int:
    return int(ch_client.query(f"SELECT count() FROM driftline.{table} WHERE model = %(m)s",
                               parameters={"m": model}).result_rows[0][0])



_STAGE_CFG_DOC = {"model": "*", "window": {"size": 200}, "min_samples": 50,
                  "reference": {"source": "first_events", "first_events": 300}}


def _stage_cfg() -> Any:
    from driftline.detectors.config import DetectorsConfig

    return DetectorsConfig.from_mapping(_STAGE_CFG_DOC)


def _records(tag: str, model: str, n: int = 2000) -> list[Any]:
    """``_stream(model, n)`` as SDK batch records of 7 events (so that chunks of 100 events split
    records) on the topics ``{tag}.predictions`` and ``{tag}.labels``, partition 0."""
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER, BY_TYPE

    out: list[RawRecord] = []
    pending: dict[str, list[bytes]] = {"predictions": [], "labels": []}
    offsets = {"predictions": 0, "labels": 0}

    def emit(role: str) -> None:
        out.append(RawRecord(f"{tag}.{role}", role, 0, offsets[role], b"\n".join(pending[role]), [BATCH_HEADER]))
        offsets[role] += 1
        pending[role] = []

    for e in _stream(model, n, shift_at=1200, label_lag=30):
        role = BY_TYPE[e["type"]].role
        pending[role].append(dumps(e))
        if len(pending[role]) == 7:
            emit(role)
    for role in pending:
        if pending[role]:
            emit(role)
    return out


def _events_in(records: list[Any]) -> int:
    return sum(r.value.count(b"\n") + 1 for r in records)

