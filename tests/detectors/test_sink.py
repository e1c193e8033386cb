"""detectors/sink.py: detector output in ``driftline.drift_metrics`` of the embedded store (real chDB
engine). Saving and loading detector state: test_state.py."""

from __future__ import annotations

import json

import clickhouse_connect
import pytest

from driftline.collector.embedded.chstore import start_chstore
from driftline.collector.store import migrate
from driftline.detectors import sink
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import from_events
from tests.detectors.detector_streams import base_features, features_stream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with start_chstore(tmp_path_factory.mktemp("detectors-ch")) as s:
        yield s


@pytest.fixture(scope="module")
def client(store):
    c = clickhouse_connect.get_client(host=store.host, port=store.port)
    migrate(c)
    return c


CFG = DetectorsConfig.from_mapping({"model": "m", "window": {"size": 500}, "min_samples": 100})


def _engine():
    eng = DetectorEngine(CFG)
    eng.set_reference(from_events(features_stream(2000, 10**9, base_features, base_features, start=10**6), "m", "v1"))
    return eng


def _shifted(rng):
    f = base_features(rng)
    f["x"] += 1
    return f


def test_rows_land_in_drift_metrics(client):
    eng = _engine()
    for ev in features_stream(1000, 500, base_features, _shifted):
        eng.observe_prediction(ev)
    rows = eng.poll()
    assert sink.write_rows(client, rows) == len(rows) > 0
    got = client.query(
        "SELECT window_start, statistic, value, drift, current_size, details FROM driftline.drift_metrics "
        "WHERE model = 'm' AND detector = 'data_drift' AND feature = 'x' AND statistic = 'wasserstein' "
        "ORDER BY window_start").result_rows
    assert [g[3] for g in got] == [False, True]
    assert got[1][2] == pytest.approx(next(r.value for r in rows if r.feature == "x" and r.statistic == "wasserstein"
                                           and r.drift))
    assert got[1][4] == 500 and json.loads(got[1][5])["kind"] == "numeric"
    nulls = client.query("SELECT count() FROM driftline.drift_metrics WHERE statistic = 'psi' "
                         "AND p_value IS NULL AND threshold = 0.2").result_rows[0][0]
    assert nulls > 0


@pytest.mark.parametrize("when", ["2026-03-01T10:00:00.123999+00:00", "2026-03-01T10:00:00.999999+00:00",
                                  "1969-12-31T23:59:59.000500+00:00", "2026-03-01T12:00:00.5+02:00"])
def test_window_bounds_are_stored_as_the_client_stores_a_datetime(client, when):
    """write_rows turns each distinct window bound into DateTime64(3) ticks itself: the stored
    value must be the one clickhouse-connect stores for the same datetime, row by row."""
    import datetime as dt
    import uuid

    from driftline.detectors.base import MetricRow

    tag = uuid.uuid4().hex[:8]
    start = dt.datetime.fromisoformat(when)
    end = start + dt.timedelta(seconds=61, microseconds=1501)
    mine = MetricRow(f"ticks-mine-{tag}", "1", "data_drift", "x", "", start, end, "psi", 0.1, None, 0.2, False,
                     10, 5, "{}")
    theirs = mine._replace(model=f"ticks-client-{tag}")
    sink.write_rows(client, [mine, mine._replace(feature="y")])
    client.insert("driftline.drift_metrics", [theirs], column_names=list(MetricRow.COLUMNS))
    got = dict(client.query(
        "SELECT model, (toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end)) "
        "FROM driftline.drift_metrics WHERE model LIKE %(m)s AND feature = 'x'", parameters={"m": f"ticks-%-{tag}"}
    ).result_rows)
    assert len(got) == 2 and got[f"ticks-mine-{tag}"] == got[f"ticks-client-{tag}"]
