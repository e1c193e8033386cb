"""The memory budget unloads idle models and their next event loads them again: on the real store,
through the collector's pipeline and detector stage, the rows are the same as with every model in
memory, and what was unloaded is counted."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.detectors.config import DetectorsConfig
from tests.detectors.stage_kit import stage_pipeline
from tests.detectors.stage_kit import _drift_rows, _stream

pytestmark = pytest.mark.integration

# Unlabelled predictions (every other one) wait out a 2-minute label horizon (1 s apart).
CFG = DetectorsConfig.from_mapping({"model": "*", "window": {"size": 200}, "min_samples": 50,
                                    "reference": {"source": "first_events", "first_events": 300},
                                    "concept": {"label_horizon_s": 120}})
MODELS = 6
TURNS = 5  # each model's stream in 5 parts; models take turns, two at a time, the others idle


def _records(prefix: str) -> list[Any]:
    """SDK batch records of 7 events, one partition per model; models active in turns."""
    from driftline.collector.pipeline import RawRecord
    from driftline.sdk.codec import dumps
    from driftline.sdk.contract import BATCH_HEADER, BY_TYPE

    streams = [_stream(f"{prefix}{m}", 1500, shift_at=900, label_lag=30, seed=m) for m in range(MODELS)]
    offsets = {(role, m): 0 for role in ("predictions", "labels") for m in range(MODELS)}
    out: list[RawRecord] = []
    for turn in range(TURNS):
        for pair in range(0, MODELS, 2):
            for m in (pair, pair + 1):
                s = streams[m]
                part = s[len(s) * turn // TURNS:len(s) * (turn + 1) // TURNS]
                for role in ("predictions", "labels"):
                    evs = [dumps(e) for e in part if BY_TYPE[e["type"]].role == role]
                    for i in range(0, len(evs), 7):
                        out.append(RawRecord(f"{prefix}.{role}", role, m, offsets[(role, m)], b"\n".join(evs[i:i + 7]),
                                             [BATCH_HEADER]))
                        offsets[(role, m)] += 1
    return out


def test_idle_models_unloaded_under_the_budget_give_the_same_rows(ch_client: Any, caplog: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    straight, _ = stage_pipeline(CFG, ch_client, max_batch_events=100)
    for rec in _chunks(_records(f"st-{tag}-")):
        straight.process(rec)

    reg = CollectorRegistry()
    # Per model ~0.37 MiB of state (20 features, estimated) and ~150 pending joins (~0.13 MiB): six
    # models do not fit in 2.5 MiB; the joins of the resident ones fit beside their state, also
    # while a pair just loaded sits beside the pair before it (none is evicted, checked below).
    parked, stage = stage_pipeline(CFG, ch_client, max_batch_events=100, registry=reg,
                                   memory_budget_mb=2.5, park_after_s=0.0)
    resident = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="driftline.detectors.monitor"):
        for rec in _chunks(_records(f"pk-{tag}-")):
            parked.process(rec)
            resident.append(len(stage.engine.monitors))
    said = [r.getMessage() for r in caplog.records if "recommended for" in r.getMessage()]
    assert len(said) == MODELS, said  # once per model and process, however often it was reloaded
    assert max(resident) < MODELS

    for m in range(MODELS):
        want, got = _drift_rows(ch_client, f"st-{tag}-{m}"), _drift_rows(ch_client, f"pk-{tag}-{m}")
        assert want and {r[1] for r in want} >= {"data_drift", "performance", "quality"}
        assert got == want, m
    n_parked = reg.get_sample_value("driftline_detector_models_parked_total")
    assert n_parked >= 2 * MODELS  # models left memory between their turns, again and again
    # every model unloaded came back from the store on its next event, but those still out at the end
    assert reg.get_sample_value("driftline_detector_state_loads_total") == n_parked - (MODELS - resident[-1])
    for m in range(MODELS):
        assert reg.get_sample_value("driftline_label_join_evicted_total", {"model": f"pk-{tag}-{m}"}) is None
    assert reg.get_sample_value("driftline_detector_models_resident") == resident[-1]
    assert 0 < reg.get_sample_value("driftline_detector_state_resident_bytes") <= 5 * 2**20


def _chunks(records: list[Any], size: int = 40) -> list[list[Any]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def test_a_time_window_still_open_keeps_its_model_until_the_clock_closes_it(ch_client: Any) -> None:
    """Over the budget, an idle model whose time window is open stays (the window closes on the
    clock, not on an event); at the tick that closes it its rows are written, then it goes."""
    from driftline.sdk.ids import uuid7

    cfg = DetectorsConfig.from_mapping({"model": "*", "window": {"kind": "time", "duration_s": 60, "grace_s": 5},
                                        "min_samples": 20,
                                        "reference": {"source": "first_events", "first_events": 100}})
    tag = uuid.uuid4().hex[:6]
    reg = CollectorRegistry()
    # saved at every tick (not at most every 5 s): the tick that closes the window writes it
    pipe, stage = stage_pipeline(cfg, ch_client, max_batch_events=100, registry=reg,
                                 memory_budget_mb=0.05, park_after_s=0.0, save_interval_s=0.0)
    t0 = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc).timestamp()
    model = f"tw-{tag}"
    records = []
    for i in range(0, 200, 10):  # 200 predictions in 40 s of event time: one window, still open
        evs = [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": model,
                "timestamp": dt.datetime.fromtimestamp(t0 + (i + j) * 0.2, dt.timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%S.%fZ"), "features": {"x": float((i + j) % 7)}, "prediction": 1}
               for j in range(10)]
        from driftline.collector.pipeline import RawRecord
        from driftline.sdk.codec import dumps
        from driftline.sdk.contract import BATCH_HEADER

        records.append(RawRecord(f"{tag}.predictions", "predictions", 0, i // 10, b"\n".join(map(dumps, evs)),
                                 [BATCH_HEADER]))
    pipe.process(records)
    stage.tick(t0 + 30)  # saved, idle, over the budget, but its window is open until t0 + 60 + 5
    assert model in stage.engine.monitors
    assert not reg.get_sample_value("driftline_detector_models_parked_total")
    stage.tick(t0 + 66)
    assert model not in stage.engine.monitors
    assert reg.get_sample_value("driftline_detector_models_parked_total") == 1
    rows = ch_client.query("SELECT count() FROM driftline.drift_metrics WHERE model = %(m)s",
                           parameters={"m": model}).result_rows[0][0]
    assert rows > 0  # the window's rows were written before the model left
