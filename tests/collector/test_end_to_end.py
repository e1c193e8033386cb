"""SDK → Tansu → collector → chDB: every event stored once, field by field."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from driftline.sdk import KafkaExporter, Monitor, SdkSettings
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration


def _count(ch_client: Any, table: str, model: str) -> int:
    return int(ch_client.query(f"SELECT count() FROM driftline.{table} WHERE model = %(m)s",
                               parameters={"m": model}).result_rows[0][0])


def test_ten_thousand_events_arrive_field_by_field(kafka_bootstrap: str, ch_client: Any, collector_factory: Any) -> None:
    topics = unique_topics()
    collector = collector_factory(topics)
    model = f"e2e-{uuid.uuid4().hex[:6]}"
    settings = SdkSettings(kafka_bootstrap=kafka_bootstrap, topics=topics, batch_size=500)
    monitor = Monitor(model=model, version="1.2.0", settings=settings, tags={"team": "risk"})
    rng = random.Random(1)
    sent: dict[str, dict[str, Any]] = {}
    for i in range(10_000):
        features = {f"f{j}": rng.gauss(0, 1) for j in range(5)}
        features.update({"plan": rng.choice(["free", "pro"]), "active": i % 2 == 0, "missing": None, "count": i})
        if i % 3 == 0:
            prediction: Any = {"yes": 0.25, "no": 0.75}
        elif i % 3 == 1:
            prediction = rng.random()
        else:
            prediction = "cat"
        pid = monitor.log(features, prediction, latency_ms=i / 10, tags={"region": "eu" if i % 2 else "us"},
                          variant="primary" if i % 4 else "shadow", request_id=f"r{i // 2}")
        sent[pid] = {"features": features, "prediction": prediction, "latency_ms": i / 10}
    labelled = list(sent)[:500]
    for pid in labelled:
        monitor.log_label(pid, "cat")
    monitor.log_outcome("conversion", 12.5, request_id="r1")
    assert monitor.flush(60), monitor.stats()
    assert monitor.stats().dropped_total == 0

    wait_for(lambda: _count(ch_client, "predictions", model) >= 10_000, timeout_s=120)
    wait_for(lambda: _count(ch_client, "labels", model) >= 500, timeout_s=60)
    wait_for(lambda: _count(ch_client, "outcomes", model) >= 1, timeout_s=60)

    rows = ch_client.query(
        "SELECT toString(event_id), model_version, variant, request_id, features_num, features_str, features_bool, "
        "features_null, prediction, prediction_num, prediction_label, prediction_scores, latency_ms, status, tags "
        "FROM driftline.predictions WHERE model = %(m)s", parameters={"m": model}).result_rows
    assert len(rows) == 10_000
    for (eid, version, variant, request_id, fnum, fstr, fbool, fnull, pred_json, pnum, plabel, pscores,
         latency, status, tags) in rows:
        expected = sent[eid]
        feats = expected["features"]
        assert version == "1.2.0" and status == "ok"
        assert variant in ("primary", "shadow")
        assert request_id.startswith("r")
        for j in range(5):
            assert fnum[f"f{j}"] == pytest.approx(feats[f"f{j}"], rel=1e-12)
        assert fnum["count"] == feats["count"]
        assert fstr == {"plan": feats["plan"]}
        assert fbool == {"active": feats["active"]}
        assert fnull == ["missing"]
        assert json.loads(pred_json) == expected["prediction"]
        if isinstance(expected["prediction"], dict):
            assert plabel == "no" and pnum == 0.75 and pscores == {"yes": 0.25, "no": 0.75}
        elif isinstance(expected["prediction"], float):
            assert pnum == pytest.approx(expected["prediction"]) and plabel is None
        else:
            assert plabel == "cat" and pnum is None
        assert latency == pytest.approx(expected["latency_ms"])
        assert tags["team"] == "risk" and tags["region"] in ("eu", "us")

    joined = ch_client.query("SELECT count(), countIf(label_str = 'cat') FROM driftline.labeled_predictions "
                             "WHERE model = %(m)s", parameters={"m": model}).result_rows[0]
    assert joined == (500, 500)
    monitor.close(5)
    # Issue 17: the 1 s timer no longer waits for the storage thread (collector/app.py TickScheduler).
    assert "is overlapping" not in collector.log()
