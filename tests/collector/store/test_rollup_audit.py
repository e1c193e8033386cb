"""The collector's rollup audit against the real store: an insert whose views did not run is found,
counted on the metrics and named once in the log; a rebuild clears it; old hours are not read."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.collector.store import rollups
from driftline.collector.store.rollup_audit import RollupAudit
from driftline.collector.store.writer import COLUMNS_OF, INSERT_SETTINGS, ClickHouseWriter, prediction_row
from driftline.sdk.codec import dumps
from driftline.sdk.ids import uuid7
from tests.collector.store.faults import StoreAway, views_detached

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 3, 1, 11, 30, tzinfo=dt.timezone.utc).timestamp()


def _predictions(model: str, n: int, hour: int) -> list[dict[str, Any]]:
    return [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": model, "model_version": "1",
             "timestamp": f"2026-03-01T{hour:02d}:{i % 60:02d}:00.000000Z", "features": {"x": float(i), "y": 1.0},
             "prediction": i % 2} for i in range(n)]


def _without_views(client: Any, events: list[dict[str, Any]]) -> None:
    with views_detached(client, "predictions"):
        client.raw_insert("driftline.predictions", column_names=list(COLUMNS_OF["predictions"]), fmt="JSONEachRow",
                          insert_block=b"\n".join(dumps(prediction_row(e)) for e in events), settings=INSERT_SETTINGS)


def _gauge(registry: CollectorRegistry, name: str, rollup: str) -> float | None:
    return registry.get_sample_value(name, {"rollup": rollup})


def test_the_audit_finds_rows_the_rollups_missed_and_says_so_once(own_store: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    audit = RollupAudit(own_store, registry, interval_s=600, recheck_s=0.1, clock=lambda: NOW)
    model = f"a-{uuid.uuid4().hex[:6]}"
    writer = ClickHouseWriter(own_store)
    writer.write(_predictions(model, 50, 11))
    assert audit.run_once() == []
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_predictions_1m") == 0

    # An insert of the current hour that ran no view, and one of an hour past the lookback (3 h).
    _without_views(own_store, _predictions(model, 30, 11))
    _without_views(own_store, _predictions(model, 7, 5))
    with caplog.at_level(logging.INFO, logger="driftline.collector"):
        found = audit.run_once()
        again = audit.run_once()
    got = {(d["rollup"], d["hour"], d["raw"], d["rollup_rows"]) for d in found}
    hour = "2026-03-01T11:00:00"
    # (the feature rollup is not audited: its roller compares it with the raw rows, test_feature_rolls.py)
    assert got == {("rollup_predictions_1m", hour, 80, 50), ("rollup_predictions_1h", hour, 80, 50)}
    assert again == found
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_predictions_1m") == 30
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_labels_1m") == 0
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_features_1h") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per (rollup, model, hour), not again on the second audit
    assert (f"rollup audit: rollup_predictions_1m misses 30 of 80 raw rows of predictions (model '{model}', "
            f"hour {hour})") in warnings[0] and "driftline rollups rebuild --yes" in warnings[0]

    caplog.clear()
    rollups.rebuild(own_store)
    with caplog.at_level(logging.INFO, logger="driftline.collector"):
        assert audit.run_once() == []
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_predictions_1m") == 0
    assert any("count every raw row of the last 3 hours again" in r.getMessage() for r in caplog.records)

    # Rows deleted since are the other way: a surplus, not a warning.
    caplog.clear()
    own_store.command("DELETE FROM driftline.predictions WHERE model = {m:String} AND prediction_num = 1",
                      parameters={"m": model})
    with caplog.at_level(logging.INFO, logger="driftline.collector"):
        audit.run_once()
    assert _gauge(registry, "driftline_rollup_rows_surplus", "rollup_predictions_1m") == 40
    assert _gauge(registry, "driftline_rollup_rows_missing", "rollup_predictions_1m") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert registry.get_sample_value("driftline_rollup_audits_total", {"outcome": "ok"}) == 5


def test_an_audit_the_store_refuses_is_said_once_and_tried_again(own_store: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import threading

    registry = CollectorRegistry()
    audit = RollupAudit(StoreAway(own_store, 3), registry, interval_s=0.05, recheck_s=0.0, clock=lambda: NOW)
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="driftline.collector"):
        thread = audit.start(stop)
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while not registry.get_sample_value("driftline_rollup_audits_total", {"outcome": "ok"}):
            assert dt.datetime.now() < deadline, "no audit completed"
            stop.wait(0.05)
        stop.set()
        thread.join(10)
    assert registry.get_sample_value("driftline_rollup_audits_total", {"outcome": "failed"}) == 3
    said = [r.getMessage() for r in caplog.records]
    assert sum("rollup audit could not run (ConnectionRefusedError)" in m for m in said) == 1
    assert not any("store away" in m for m in said)  # no error message: it could quote a stored value
    assert "rollup audit runs again" in said
