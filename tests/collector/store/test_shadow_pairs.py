"""Shadow pairs in the rollups: every shadow (named or not) paired with the served event of the same
request *and row*, and agreement counted for numeric class ids (real chDB store)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from driftline.collector.store import rollups
from driftline.collector.store.rollup_sql import SHADOW_RAW_SELECT
from driftline.collector.store.writer import ClickHouseWriter
from driftline.sdk.contract import format_timestamp
from driftline.sdk.contract.variants import ROW_TAG

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 30, 10, 0, 5, tzinfo=dt.timezone.utc)


def event(model: str, variant: str, rid: str, prediction: Any, *, row: int | None = None, version: str = "v1",
          dt_s: float = 0.0) -> dict[str, Any]:
    return {"schema_version": 1, "type": "prediction", "event_id": str(uuid.uuid4()),
            "timestamp": format_timestamp(int((T0 + dt.timedelta(seconds=dt_s)).timestamp() * 1e9)), "model": model,
            "model_version": version, "variant": variant, "request_id": rid, "features": {"x": 1.0},
            "prediction": prediction, "latency_ms": 3.0, "status": "ok", "error": None,
            "tags": {} if row is None else {ROW_TAG: str(row)}}


def test_named_shadows_pair_per_row_and_agree_on_numeric_class_ids(ch_client: Any) -> None:
    rollups.ensure(ch_client)
    m = f"pairs-{uuid.uuid4().hex[:8]}"
    writer = ClickHouseWriter(ch_client)
    # A two-row request with integer class ids whose named shadow (its own version) agrees on row 0
    # only; an unnamed shadow; an older shadow2. One insert: a pair completed by a
    # later insert depends on chDB running the pair views on that insert, which chDB 26.9 now and
    # then skips (seen before this change too; tests/dashboard/test_rollups.py covers that path).
    writer.write([event(m, "primary", "q", 1, row=0), event(m, "primary", "q", 2, row=1),
                  event(m, "primary", "one", "cat"), event(m, "shadow", "one", "cat", dt_s=0.1),
                  event(m, "primary", "ab", "dog"), event(m, "shadow2", "ab", "cat", dt_s=0.1),
                  event(m, "shadow:candidate", "q", 1, row=0, version="v2", dt_s=0.2),
                  event(m, "shadow:candidate", "q", 0, row=1, version="v2", dt_s=0.2),
                  event(m, "shadow:candidate", "lonely", 5, version="v2")])  # no served event: no pair
    sums = ("SELECT sum(pairs), sum(cmp_n), sum(agree) FROM driftline.rollup_shadow_1m "
            f"WHERE model = '{m}'")
    by_version = (f"SELECT s_version, sum(pairs) FROM driftline.rollup_shadow_1m WHERE model = '{m}' "
                  "GROUP BY s_version ORDER BY s_version")
    assert ch_client.query(sums).result_rows == [(4, 4, 2)]
    assert ch_client.query(by_version).result_rows == [("v1", 2), ("v2", 2)]
    raw = SHADOW_RAW_SELECT.format(rows=f"model = '{m}'", primary="1")
    assert ch_client.query(f"SELECT sum(pairs), sum(cmp_n), sum(agree) FROM ({raw})").result_rows == [(4, 4, 2)]



