"""detectors/sink.py: detector output in ``driftline.drift_metrics`` of the embedded store (real chDB
engine). Saving and loading detector state: test_state.py."""

from __future__ import annotations

import json

import clickhouse_connect
import pytest

from driftline.collector.chstore import start_chstore
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
