"""The feature rollup's rolls against the real store: closed hours only, every served value counted
once by the latest roll, late and deleted rows rolled again, a half-done or doubled roll never
counted twice, the store away said once; hours of few predictions recorded as read raw. The tests of
the bins roll every hour (``min_values=0``): their hours are small."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.collector.store import feature_rolls as fr
from driftline.collector.store.rollup_check import check
from driftline.collector.store.rollup_sql import ROLL_MIN_VALUES, latest_rolls, roll_insert, rolled_rows
from driftline.collector.store.writer import ClickHouseWriter
from driftline.dashboard import queries
from driftline.dashboard.view import View
from driftline.sdk.ids import uuid7
from tests.collector.store.faults import StoreAway

pytestmark = pytest.mark.integration

DAY = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
NOW = (DAY + dt.timedelta(hours=11, minutes=30)).timestamp()  # 11:00 is open, 10:00 closed 30 min ago


def _predictions(model: str, n: int, hour: int, variant: str = "primary") -> list[dict[str, Any]]:
    return [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": model, "model_version": "1",
             "variant": variant, "timestamp": f"2026-03-01T{hour:02d}:{i % 60:02d}:{i % 59:02d}.000000Z",
             "features": {"x": float(i), "y": 1.0, "c": "red" if i % 3 else "blue"}, "prediction": i % 2}
            for i in range(n)]


def _rolled(client: Any, model: str) -> dict[int, int]:
    """Values per hour of ``model`` the dashboard reads from the rollup: its latest rolls' rows."""
    rows = client.query(f"SELECT toHour(hour), sum(n) FROM driftline.rollup_features_1h WHERE model = {{m:String}} "
                        f"AND {rolled_rows()} GROUP BY 1 ORDER BY 1", parameters={"m": model}).result_rows
    return {int(h): int(n) for h, n in rows}


def _hour(h: int) -> int:
    return int((DAY + dt.timedelta(hours=h)).timestamp())


def test_closed_hours_are_rolled_once_and_late_rows_again(own_store: Any) -> None:
    registry = CollectorRegistry()
    roller = fr.FeatureRoller(own_store, registry, interval_s=60, after_s=300, clock=lambda: NOW,
                              min_values=0)
    model = f"r-{uuid.uuid4().hex[:6]}"
    writer = ClickHouseWriter(own_store)
    for hour, n in ((6, 40), (10, 50), (11, 20)):
        writer.write(_predictions(model, n, hour))
    writer.write(_predictions(model, 9, 10, variant="shadow"))  # shadows are not served: never rolled
    assert roller.run_once() == 2  # 06:00 and 10:00 (closed 30 min ago); 11:00 is open
    assert _rolled(own_store, model) == {6: 120, 10: 150}  # three values an event
    assert roller.run_once() == 0  # nothing changed: nothing rolled again
    assert registry.get_sample_value("driftline_feature_rollup_rolled_total") == 2

    # Rows arriving late for a rolled hour: the hour is rolled again, the older roll's rows deleted.
    writer.write(_predictions(model, 5, 10))
    assert _rolled(own_store, model) == {6: 120, 10: 150}  # until the next run, the last roll counts
    assert roller.run_once() == 1
    assert _rolled(own_store, model) == {6: 120, 10: 165}
    gens = own_store.query("SELECT uniqExact(gen) FROM driftline.rollup_features_1h WHERE model = {m:String} "
                           "AND toHour(hour) = 10", parameters={"m": model}).result_rows[0][0]
    assert gens == 1
    # 06:00 is past the lookback (3 h): a late row there waits for the next full check
    writer.write(_predictions(model, 1, 6))
    assert roller.run_once() == 0
    roller.full_check_s = 0.0
    assert roller.run_once() == 1 and _rolled(own_store, model) == {6: 123, 10: 165}
    assert registry.get_sample_value("driftline_feature_rollup_full_check_timestamp_seconds") == NOW

    # Rows deleted from the raw log: rolled again, so the rollup no longer holds their values.
    own_store.command("DELETE FROM driftline.predictions WHERE model = {m:String} AND toHour(timestamp) = 10",
                      parameters={"m": model})
    assert roller.run_once() == 1
    assert _rolled(own_store, model) == {6: 123}
    left = own_store.query("SELECT count() FROM driftline.rollup_features_1h WHERE model = {m:String} "
                           "AND toHour(hour) = 10", parameters={"m": model}).result_rows[0][0]
    assert left == 0
    # the rolled hours agree with the raw rows (the other rollups keep deleted rows until a rebuild)
    assert [d for d in check(own_store, 0.0) if d["rollup"] == "rollup_features_1h"] == []

    # The open hour closes (and is 5 min past its end): rolled.
    roller.clock = lambda: NOW + 35 * 60
    assert roller.run_once() == 1 and _rolled(own_store, model) == {6: 123, 11: 60}


def test_a_half_done_or_doubled_roll_is_never_counted_twice(own_store: Any) -> None:
    model = f"h-{uuid.uuid4().hex[:6]}"
    ClickHouseWriter(own_store).write(_predictions(model, 30, 9))
    hour = _hour(9)
    # A roll that wrote its rows and stopped before its record (a crash): not read, rolled again.
    own_store.command(roll_insert(f"model = '{model}'", 12345, min_values=0))
    assert _rolled(own_store, model) == {}
    assert [p[:4] for p in fr.pending(own_store, 0, _hour(10))] == [(model, hour, 90, 0)]
    first = fr.roll(own_store, hour, None, clock=lambda: NOW, min_values=0)
    assert _rolled(own_store, model) == {9: 90}
    # Two collectors rolling the same hour at once (the same clock), both recorded: the latest
    # generation alone counts; a roll after a known one is later even when the clock is not.
    second = fr.roll(own_store, hour, [model], clock=lambda: NOW, min_values=0)
    assert second != first and _rolled(own_store, model) == {9: 90}
    third = fr.roll(own_store, hour, [model], after_gen=max(first, second), clock=lambda: NOW - 3600,
                    min_values=0)
    assert third == max(first, second) + 1 and _rolled(own_store, model) == {9: 90}
    assert fr.pending(own_store, 0, _hour(10)) == []
    gens = own_store.query("SELECT groupUniqArray(gen) FROM driftline.rollup_features_1h WHERE model = {m:String}",
                           parameters={"m": model}).result_rows[0][0]
    assert gens == [third]  # a roll after a known one deletes the older generations' rows (and the crashed one's)


def test_many_models_of_an_hour_are_rolled_again_as_one_statement(own_store: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fr, "MAX_LISTED", 2)
    models = [f"m{i}-{uuid.uuid4().hex[:4]}" for i in range(4)]
    writer = ClickHouseWriter(own_store)
    for m in models:
        writer.write(_predictions(m, 10, 8))
    assert fr.roll_closed(own_store, min_values=0) == 4
    statements: list[str] = []
    real = own_store.command

    def spy(sql: str, *a: Any, **kw: Any) -> Any:
        statements.append(sql)
        return real(sql, *a, **kw)

    monkeypatch.setattr(own_store, "command", spy)
    for m in models[:3]:  # three late: more than MAX_LISTED, the whole hour again
        writer.write(_predictions(m, 2, 8))
    assert fr.roll_closed(own_store, min_values=0) == 3
    inserts = [s for s in statements if s.startswith("INSERT INTO driftline.rollup_features_1h")]
    assert len(inserts) == 1 and "model IN" not in inserts[0]
    assert [_rolled(own_store, m) for m in models] == [{8: 36}, {8: 36}, {8: 36}, {8: 30}]
    statements.clear()
    writer.write(_predictions(models[3], 1, 8))  # one: named
    assert fr.roll_closed(own_store, min_values=0) == 1
    assert "model IN {models:Array(String)}" in [s for s in statements if "rollup_features_1h (" in s][0]
    assert _rolled(own_store, models[3]) == {8: 33}


def test_a_roll_the_store_refuses_is_said_once_and_tried_again(own_store: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    model = f"a-{uuid.uuid4().hex[:6]}"
    ClickHouseWriter(own_store).write(_predictions(model, 10, 7))
    registry = CollectorRegistry()
    roller = fr.FeatureRoller(StoreAway(own_store, 3), registry, interval_s=0.05, after_s=0, clock=lambda: NOW,
                              min_values=0)
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="driftline.collector"):
        thread = roller.start(stop)
        for _ in range(200):
            if registry.get_sample_value("driftline_feature_rollup_runs_total", {"outcome": "ok"}):
                break
            stop.wait(0.05)
        stop.set()
        thread.join(5)
    assert registry.get_sample_value("driftline_feature_rollup_runs_total", {"outcome": "failed"}) == 3
    assert _rolled(own_store, model) == {7: 30}
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "could not roll (ConnectionRefusedError)" in said[0] and "store away" not in said[0]
    assert any(r.getMessage() == "feature rollup: rolling again" for r in caplog.records)


def test_check_names_an_hour_not_rolled_before_a_rolled_one(own_store: Any) -> None:
    """The dashboard reads a model's hours up to its last rolled one from the rollup: an hour there
    without a roll yet (rows that arrived since the last run) is named by the check until rolled."""
    model = f"g-{uuid.uuid4().hex[:6]}"
    writer = ClickHouseWriter(own_store)
    writer.write(_predictions(model, 10, 8) + _predictions(model, 10, 10))
    assert fr.roll_closed(own_store, min_values=0) == 2
    writer.write(_predictions(model, 4, 9))  # a gap before the last rolled hour
    writer.write(_predictions(model, 4, 11))  # after it: read raw, not a difference
    found = [(d["hour"], d["raw"], d["rollup_rows"]) for d in check(own_store, 0.0)
             if d["rollup"] == "rollup_features_1h" and d["model"] == model]
    assert found == [("2026-03-01T09:00:00", 12, 0)]
    assert fr.roll_closed(own_store, min_values=0) == 2
    assert [d for d in check(own_store, 0.0) if d["rollup"] == "rollup_features_1h"] == []


def test_an_hour_of_few_predictions_is_read_raw_not_rolled(own_store: Any) -> None:
    """Fewer than ROLL_MIN_VALUES feature values in a (model, hour): recorded as a raw roll with no
    bins, counted by the check, and the dashboard's histogram of that hour is the raw rows' own; once
    late rows make it big enough, it is rolled into bins."""
    small, big = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("s", "b"))
    enough = -(-ROLL_MIN_VALUES // 3)  # predictions of three feature values each
    writer = ClickHouseWriter(own_store)
    writer.write(_predictions(small, 40, 8) + _predictions(big, enough, 8))
    assert fr.roll_closed(own_store) == 2
    rolls = {m: own_store.query(f"SELECT n, raw FROM ({latest_rolls()}) WHERE model = {{m:String}}",
                                parameters={"m": m}).result_rows for m in (small, big)}
    assert rolls == {small: [(120, 1)], big: [(3 * enough, 0)]}
    assert _rolled(own_store, small) == {} and _rolled(own_store, big) == {8: 3 * enough}
    assert fr.pending(own_store, 0, _hour(9)) == []
    assert [d for d in check(own_store, 0.0) if d["rollup"] == "rollup_features_1h"] == []

    def hist(model: str, raw: bool) -> list[tuple[int, float, float]]:
        v = View(model, DAY + dt.timedelta(hours=8), DAY + dt.timedelta(hours=9))
        qy = queries.numeric_hist(v, "x", [9.5, 20.5, 33.5], raw=raw)
        return [(int(b), n, s) for b, n, s in own_store.query(qy.sql, parameters=dict(qy.params)).result_rows]

    exact = hist(small, True)
    assert [n for _, n, _ in exact] == [10, 11, 13, 6]
    assert hist(small, False) == exact  # read raw: the values themselves, not bins
    writer.write(_predictions(small, enough, 8))  # late rows: now big enough for bins
    assert fr.roll_closed(own_store) == 1
    assert own_store.query(f"SELECT n, raw FROM ({latest_rolls()}) WHERE model = {{m:String}}",
                           parameters={"m": small}).result_rows == [(3 * (40 + enough), 0)]
    assert _rolled(own_store, small) == {8: 3 * (40 + enough)}
    assert sum(n for _, n, _ in hist(small, False)) == pytest.approx(40 + enough)
