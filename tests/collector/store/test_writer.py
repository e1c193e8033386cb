"""The writer's replay lookup against the embedded store: a replayed event is one row."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from driftline.collector.store.writer import ClickHouseWriter
from driftline.sdk.ids import uuid7

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
