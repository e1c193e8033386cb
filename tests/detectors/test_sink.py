"""Detector output and references in the embedded ClickHouse store (real chDB engine)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import uuid

import clickhouse_connect
import pandas as pd
import pytest

from detector_streams import base_features, features_stream
from driftline.collector.chstore import start_chstore
from driftline.collector.store import migrate
from driftline.detectors import cli, sink
from driftline.detectors.config import DetectorsConfig
from driftline.detectors.engine import DetectorEngine
from driftline.detectors.reference import ReferenceStore, from_events

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


def test_reference_store_save_replace_list_delete(client):
    refs = ReferenceStore(client)
    a = from_events(features_stream(300, 10**9, base_features, base_features), "shop", "v1")
    refs.save(a)
    b = from_events(features_stream(600, 10**9, base_features, base_features), "shop", "v1")
    refs.save(b)  # replaces
    loaded = refs.load("shop", "v1")
    assert loaded is not None and loaded.n_rows == 600 and loaded.features == b.features
    assert [(i.model, i.model_version, i.n_rows) for i in refs.list("shop")] == [("shop", "v1", 600)]
    assert refs.delete("shop", "v1") is True
    assert refs.load("shop", "v1") is None and refs.list("shop") == []
    assert refs.delete("shop", "v1") is False


def _cli(store, *argv) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="driftline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([*argv, "--clickhouse-url", f"http://{store.host}:{store.port}"])
    out = io.StringIO()
    return args.func(args, out), out.getvalue()


def test_cli_set_from_parquet_and_csv_list_and_delete(store, client, tmp_path):
    rng = random.Random(0)
    df = pd.DataFrame([{**base_features(rng), "label": rng.randint(0, 1), "score": rng.random()} for _ in range(2000)])
    df.to_parquet(tmp_path / "train.parquet")
    df.to_csv(tmp_path / "train.csv", index=False)
    code, out = _cli(store, "reference", "set", "--model", "cli", "--version", "v1", "--file",
                     str(tmp_path / "train.parquet"), "--exclude", "label", "--prediction-column", "score")
    assert code == 0 and "2000 rows, 5 features" in out
    code, _ = _cli(store, "reference", "set", "--model", "cli", "--version", "v2", "--file", str(tmp_path / "train.csv"),
                   "--exclude", "label")
    assert code == 0
    code, out = _cli(store, "reference", "list", "--model", "cli")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[1].startswith("cli\tv1\t2000\t5")
    ref = ReferenceStore(client).load("cli", "v1")
    assert set(ref.outputs) == {"prediction"} and ref.features["plan"].categories == ("a", "b", "c")
    assert _cli(store, "reference", "delete", "--model", "cli", "--version", "v2")[0] == 0
    assert _cli(store, "reference", "delete", "--model", "cli", "--version", "v2")[0] == 1


def test_cli_set_from_first_events_and_time_range_of_the_prediction_log(store, client):
    rng = random.Random(1)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(400):
        f = base_features(rng)
        rows.append([uuid.uuid4(), t0 + dt.timedelta(seconds=i), "logm", "v9", "primary", f"r{i}",
                     {k: float(v) for k, v in f.items() if k in ("x", "y", "n")}, {"plan": f["plan"]},
                     {"flag": f["flag"]}, [], json.dumps(i % 2), "ok", {}])
    client.insert("driftline.predictions", rows, column_names=[
        "event_id", "timestamp", "model", "model_version", "variant", "request_id", "features_num",
        "features_str", "features_bool", "features_null", "prediction", "status", "tags"])
    code, out = _cli(store, "reference", "set", "--model", "logm", "--version", "v9", "--first-events", "150")
    assert code == 0 and "150 rows" in out
    code, out = _cli(store, "reference", "set", "--model", "logm", "--version", "v9",
                     "--from", "2026-01-01T00:01:40Z", "--to", "2026-01-01T00:03:20Z")
    assert code == 0 and "100 rows" in out
    ref = ReferenceStore(client).load("logm", "v9")
    assert ref.n_rows == 100 and ref.features["flag"].dtype == "bool" and ref.features["x"].kind == "numeric"
    code, _ = _cli(store, "reference", "set", "--model", "nope", "--version", "v1", "--first-events", "10")
    assert code == 2
