"""The writer against the embedded store: a replayed event is one row; rows stored without their
materialized views are inserted again until the rollups count them."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Iterator

import pytest

from driftline.collector.store.writer import REINSERT_ATTEMPTS, ClickHouseWriter
from driftline.sdk.ids import uuid7
from tests.collector.store.faults import views_detached

pytestmark = pytest.mark.integration


def _prediction(model: str, i: int, second: int = 0, event_id: str | None = None) -> dict[str, Any]:
    return {"schema_version": 1, "type": "prediction", "event_id": event_id or uuid7(),
            "timestamp": f"2026-03-01T10:{second // 60:02d}:{second % 60:02d}.{i % 1_000_000:06d}Z",
            "model": model, "model_version": "1", "features": {"x": float(i)}, "prediction": i % 2}


def _count(client: Any, model: str) -> int:
    return int(client.query(f"SELECT count() FROM driftline.predictions WHERE model = '{model}'").result_rows[0][0])


def test_a_replayed_chunk_is_skipped_and_reported(ch_client: Any) -> None:
    model = f"w-{uuid.uuid4().hex[:8]}"
    writer = ClickHouseWriter(ch_client)
    events = [_prediction(model, i) for i in range(300)]
    first = writer.write(events)
    assert first.stored == {"predictions": 300} and first.duplicates == 0 and not first.skipped
    # A replay overlapping the stored chunk plus new events: only the new ones are written.
    fresh = [_prediction(model, 1000 + i) for i in range(50)]
    again = writer.write(events[100:] + fresh)
    assert again.stored == {"predictions": 50}
    assert again.skipped == frozenset(e["event_id"] for e in events[100:])
    assert again.duplicates == 200
    assert _count(ch_client, model) == 350


def test_replays_are_found_whatever_the_case_of_the_ids(ch_client: Any) -> None:
    # ClickHouse returns UUIDs in lower case; schema v1 accepts upper-case ids. The ids reported
    # back must be the ones the events carry (the detector stage compares them).
    model = f"w-{uuid.uuid4().hex[:8]}"
    writer = ClickHouseWriter(ch_client)
    events = [_prediction(model, i, event_id=uuid7().upper()) for i in range(20)]
    writer.write(events)
    again = writer.write(events)
    assert again.stored == {} and again.skipped == frozenset(e["event_id"] for e in events)
    assert _count(ch_client, model) == 20


def test_a_late_chunk_over_a_crowded_range_falls_back_to_the_lookup_by_id(ch_client: Any) -> None:
    # 3,000 stored rows inside the time range of a 10-event replay: more than the range lookup
    # reads (4 x chunk + 1000), so the writer asks by id instead, and still finds the replays.
    model = f"w-{uuid.uuid4().hex[:8]}"
    writer = ClickHouseWriter(ch_client)
    crowd = [_prediction(model, i, second=1 + i % 50) for i in range(3000)]
    writer.write(crowd)
    replayed = [e for i, e in enumerate(crowd) if i % 50 == 49][:8]  # the latest second: read last
    late = [_prediction(model, i, second=s) for i, s in enumerate((0, 59))] + replayed
    result = writer.write(late)
    assert result.stored == {"predictions": 2}
    assert result.skipped == frozenset(e["event_id"] for e in replayed)
    assert _count(ch_client, model) == 3002


class _ViewsDetached:
    """A client whose next ``inserts`` inserts into ``table`` run with the table's views detached
    (``faults.views_detached``); with ``reattach=False`` they stay detached (rollups dropped on
    purpose)."""

    def __init__(self, client: Any, inserts: int, reattach: bool = True, table: str = "predictions") -> None:
        self.client, self.inserts, self.reattach, self.table = client, inserts, reattach, table
        self.deletes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self.deletes += sql.startswith("DELETE")
        return self.client.command(sql, *args, **kwargs)

    def raw_insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        if not self.inserts or table != f"driftline.{self.table}":
            return self.client.raw_insert(table, *args, **kwargs)
        self.inserts -= 1
        with views_detached(self.client, self.table, self.reattach):
            return self.client.raw_insert(table, *args, **kwargs)


def _counts(client: Any, model: str) -> tuple[int, int, int, int]:
    """(raw rows, distinct ids, rollup_predictions_1m sum, rollup_prediction_index rows) of ``model``."""
    raw, ids = client.query("SELECT count(), uniqExact(event_id) FROM driftline.predictions WHERE model = {m:String}",
                            parameters={"m": model}).result_rows[0]
    rolled = client.query("SELECT sum(n) FROM driftline.rollup_predictions_1m WHERE model = {m:String}",
                          parameters={"m": model}).result_rows[0][0]
    index = client.query("SELECT count() FROM driftline.rollup_prediction_index WHERE model = {m:String}",
                         parameters={"m": model}).result_rows[0][0]
    return int(raw), int(ids), int(rolled), int(index)


def test_rows_stored_without_their_views_are_inserted_again(own_store: Any, caplog: Any) -> None:
    model = f"w-{uuid.uuid4().hex[:8]}"
    client = _ViewsDetached(own_store, inserts=2)
    writer = ClickHouseWriter(client)  # type: ignore[arg-type]
    events = [_prediction(model, i) for i in range(200)]
    with caplog.at_level(logging.WARNING, "driftline.collector"):
        result = writer.write(events)
    # Two inserts ran without the views; the third fed them. Each row is stored once and counted
    # once by every rollup; the rows stored are the ones sent.
    assert result.stored == {"predictions": 200} and result.reinserted == 400
    assert client.deletes == 2
    assert _counts(own_store, model) == (200, 200, 200, 200)
    stored = {r[0] for r in own_store.query("SELECT toString(event_id) FROM driftline.predictions "
                                            "WHERE model = {m:String}", parameters={"m": model}).result_rows}
    assert stored == {e["event_id"] for e in events}
    assert sum("without its materialized views" in r.getMessage() for r in caplog.records) == 2
    assert model not in caplog.text  # counts and the table's name only
    # A replay of the chunk afterwards is found stored and not written again.
    again = writer.write(events)
    assert again.stored == {} and len(again.skipped) == 200 and again.reinserted == 0
    assert _counts(own_store, model) == (200, 200, 200, 200)


def test_the_collector_counts_the_rows_it_inserted_again(own_store: Any) -> None:
    import json

    from prometheus_client import CollectorRegistry

    from driftline.collector.metrics import CollectorMetrics
    from driftline.collector.pipeline import Pipeline, RawRecord

    model = f"w-{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    writer = ClickHouseWriter(_ViewsDetached(own_store, inserts=1))  # type: ignore[arg-type]
    pipe = Pipeline(writer, CollectorMetrics(registry), send_dead_letters=lambda dead: None)
    records = [RawRecord("t", "predictions", 0, i, json.dumps(_prediction(model, i)).encode()) for i in range(40)]
    assert pipe.process(records).stored == 40
    assert registry.get_sample_value("driftline_collector_rows_reinserted_total") == 40
    assert _counts(own_store, model) == (40, 40, 40, 40)


def test_rows_stay_stored_when_the_views_keep_missing_them(own_store: Any, caplog: Any) -> None:
    model = f"w-{uuid.uuid4().hex[:8]}"
    client = _ViewsDetached(own_store, inserts=REINSERT_ATTEMPTS + 1)
    writer = ClickHouseWriter(client)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "driftline.collector"):
        result = writer.write([_prediction(model, i) for i in range(50)])
    # The raw log is the record: the rows stay, once each, and the error says so.
    assert result.stored == {"predictions": 50} and result.reinserted == 50 * REINSERT_ATTEMPTS
    assert _counts(own_store, model) == (50, 50, 0, 0)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "they stay stored" in errors[0].getMessage()
    # The next chunk, with the views working, is counted at once.
    ok = writer.write([_prediction(model, 100 + i) for i in range(10)])
    assert ok.reinserted == 0 and _counts(own_store, model) == (60, 60, 10, 10)


def test_an_insert_is_not_repeated_when_the_rollups_are_gone(own_store: Any) -> None:
    # Views dropped on purpose: an insert writes only its own rows, and that is right.
    model = f"w-{uuid.uuid4().hex[:8]}"
    client = _ViewsDetached(own_store, inserts=1, reattach=False)
    result = ClickHouseWriter(client).write([_prediction(model, i) for i in range(30)])  # type: ignore[arg-type]
    assert result.stored == {"predictions": 30} and result.reinserted == 0 and client.deletes == 0
    assert _counts(own_store, model) == (30, 30, 0, 0)


@pytest.mark.parametrize("kind", ["label", "outcome"])
def test_labels_and_outcomes_stored_without_their_views_are_inserted_again(own_store: Any, kind: str) -> None:
    # Their views join with predictions (and may write nothing); the arrivals view writes for
    # every insert, so a skipped insert shows in its summary here too.
    model = f"w-{uuid.uuid4().hex[:8]}"
    preds = [_prediction(model, i) for i in range(20)]
    extra = {"label": lambda p: {"prediction_id": p["event_id"], "label": 1},
             "outcome": lambda p: {"prediction_id": p["event_id"], "name": "revenue", "value": 2.5}}[kind]
    events = [{"schema_version": 1, "type": kind, "event_id": uuid7(), "timestamp": p["timestamp"], "model": model,
               "model_version": "1", **extra(p)} for p in preds]
    table = f"{kind}s"
    ClickHouseWriter(own_store).write(preds)
    client = _ViewsDetached(own_store, inserts=1, table=table)
    result = ClickHouseWriter(client).write(events)  # type: ignore[arg-type]
    assert result.stored == {table: 20} and result.reinserted == 20 and client.deletes == 1

    def one(sql: str) -> int:
        return int(own_store.query(sql, parameters={"m": model, "k": table}).result_rows[0][0])

    assert one("SELECT count() FROM driftline.{k:Identifier} WHERE model = {m:String}") == 20
    assert one("SELECT uniqExact(event_id) FROM driftline.{k:Identifier} WHERE model = {m:String}") == 20
    def hourly(sql: str) -> int:
        return int(own_store.query(sql, parameters={"k": table, "h": "2026-03-01 10:00:00"}).result_rows[0][0])

    arrived = hourly("SELECT sum(n) FROM driftline.rollup_arrivals_1h WHERE kind = {k:String} AND hour = {h:DateTime}")
    stored = hourly("SELECT count() FROM driftline.{k:Identifier} WHERE toStartOfHour(timestamp) = {h:DateTime}")
    assert arrived == stored == 20  # the test's own store: only this model's rows in that hour
    # The joined rollup counts every one of them too.
    joined = {"label": "SELECT sum(labelled) FROM driftline.rollup_labels_1m WHERE model = {m:String}",
              "outcome": "SELECT sum(n) FROM driftline.rollup_outcomes_1m WHERE model = {m:String}"}[kind]
    assert one(joined) == 20


def test_rows_a_failed_insert_stored_anyway_are_not_written_twice_and_are_named(own_store: Any, caplog: Any) -> None:
    # A view that throws for this model: the insert fails (now also through the embedded store),
    # after ClickHouse stored its rows. The retry finds them, writes them once, and says the rollups
    # may miss them; the audit then counts what they miss.
    model = f"boom-{uuid.uuid4().hex[:8]}"
    own_store.command("CREATE TABLE driftline.boom_sink (n UInt64) ENGINE = Memory")
    own_store.command(f"CREATE MATERIALIZED VIEW driftline.boom_mv TO driftline.boom_sink AS SELECT "
                      f"throwIf(model = '{model}', 'view failed') AS n FROM driftline.predictions")
    writer = ClickHouseWriter(own_store)
    events = [_prediction(model, i) for i in range(30)]
    try:
        with pytest.raises(Exception, match="view failed"):
            writer.write(events)
    finally:
        own_store.command("DROP VIEW driftline.boom_mv")
        own_store.command("DROP TABLE driftline.boom_sink")
    assert _count(own_store, model) == 30  # stored by the failed insert
    with caplog.at_level(logging.WARNING, "driftline.collector"):
        again = writer.write(events)
    assert again.stored == {} and len(again.skipped) == 30 and _count(own_store, model) == 30
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("30 rows of a failed insert into predictions were stored anyway") for m in said), said
    assert model not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "driftline.collector"):
        writer.write(events)  # a plain replay later: nothing failed before it, nothing said
    assert not caplog.records
