"""detectors/cli.py, ``driftline reference``: where it finds ClickHouse (a real chDB store with a
password), and set / list / delete from files and from the prediction log (the session's store)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import uuid
from urllib.parse import quote

import pandas as pd
import pytest

from driftline.collector.embedded.chstore import start_chstore
from driftline.detectors import cli
from driftline.detectors.reference_store import ReferenceStore
from tests.detectors.detector_streams import base_features

pytestmark = pytest.mark.integration

PASSWORD = "p@ss:w/rd%"  # every character that must be URL-escaped in a URL's userinfo


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with start_chstore(tmp_path_factory.mktemp("detectors-cli-ch"), extra_args=("--password", PASSWORD)) as s:
        yield s


def _url(store, password: str) -> str:
    return f"http://default:{quote(password, safe='')}@{store.host}:{store.port}"


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="driftline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    return args.func(args, out, env=env), out.getvalue()


def test_honours_driftline_clickhouse_url_and_decodes_the_password(store):
    # No --clickhouse-url: the environment's URL, whose escaped password must be decoded.
    code, out = _run(["reference", "list"], env={"DRIFTLINE_CLICKHOUSE_URL": _url(store, PASSWORD)})
    assert code == 0
    assert out.startswith("model\tversion")


def test_the_flag_wins_over_the_environment(store):
    code, _ = _run(["reference", "list", "--clickhouse-url", _url(store, PASSWORD)],
                   env={"DRIFTLINE_CLICKHOUSE_URL": "http://127.0.0.1:9"})
    assert code == 0


def test_a_wrong_password_is_refused(store):
    with pytest.raises(Exception, match="516|AUTHENTICATION|[Aa]uthentication"):
        _run(["reference", "list"], env={"DRIFTLINE_CLICKHOUSE_URL": _url(store, "wrong")})


def _cli(store, *argv) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="driftline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([*argv, "--clickhouse-url", f"http://{store.host}:{store.port}"])
    out = io.StringIO()
    return args.func(args, out), out.getvalue()


def test_set_from_parquet_and_csv_list_and_delete(chstore, ch_client, tmp_path):
    rng = random.Random(0)
    df = pd.DataFrame([{**base_features(rng), "label": rng.randint(0, 1), "score": rng.random()} for _ in range(2000)])
    df.to_parquet(tmp_path / "train.parquet")
    df.to_csv(tmp_path / "train.csv", index=False)
    code, out = _cli(chstore, "reference", "set", "--model", "cli", "--version", "v1", "--file",
                     str(tmp_path / "train.parquet"), "--exclude", "label", "--prediction-column", "score")
    assert code == 0 and "2000 rows, 5 features" in out and "feature importance: from the prediction" in out
    # 2,000 rows: too few for the default 1,000-event windows, enough for 100-event ones.
    assert "warning: reference of 2,000 events; 10,000 recommended for 1,000-event windows" in out
    code, out = _cli(chstore, "reference", "set", "--model", "cli", "--version", "v2", "--file", str(tmp_path / "train.csv"),
                     "--exclude", "label")
    assert code == 0 and "feature importance: unknown" in out
    code, out = _cli(chstore, "reference", "set", "--model", "cli", "--version", "v3", "--file", str(tmp_path / "train.csv"),
                     "--label-column", "label", "--exclude", "score")
    assert code == 0 and "2000 rows, 5 features" in out and "feature importance: from the label" in out
    labelled = ReferenceStore(ch_client).load("cli", "v3")
    assert {p.importance_from for p in labelled.features.values()} == {"label"}
    assert _cli(chstore, "reference", "delete", "--model", "cli", "--version", "v3")[0] == 0
    code, out = _cli(chstore, "reference", "show", "--model", "cli", "--version", "v1")
    assert code == 0 and out.startswith("reference cli v1: 2000 rows, 5 features, 1 outputs (file:train.parquet")
    assert "\n  plan\tcategorical\t2000 present, 0 missing\n" in out
    assert out.rstrip().endswith("warning: reference of 2,000 events; 10,000 recommended for 1,000-event "
                                 "windows: smaller references make every window's verdict noisier "
                                 "(see reference_size_needed)")
    code, out = _cli(chstore, "reference", "show", "--model", "cli", "--version", "v1", "--window-size", "100")
    assert code == 0 and "size: enough for 100-event windows (1,000 recommended)" in out and "warning" not in out
    assert _cli(chstore, "reference", "show", "--model", "cli", "--version", "v7")[0] == 1
    assert _cli(chstore, "reference", "show", "--model", "cli", "--version", "v1", "--window-size", "0")[0] == 2
    code, out = _cli(chstore, "reference", "list", "--model", "cli")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[1].startswith("cli\tv1\t2000\t5")
    ref = ReferenceStore(ch_client).load("cli", "v1")
    assert set(ref.outputs) == {"prediction"} and ref.features["plan"].categories == ("a", "b", "c")
    assert _cli(chstore, "reference", "delete", "--model", "cli", "--version", "v2")[0] == 0
    assert _cli(chstore, "reference", "delete", "--model", "cli", "--version", "v2")[0] == 1


def test_set_from_first_events_and_time_range_of_the_prediction_log(chstore, ch_client):
    rng = random.Random(1)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(400):
        f = base_features(rng)
        rows.append([uuid.uuid4(), t0 + dt.timedelta(seconds=i), "logm", "v9", "primary", f"r{i}",
                     {k: float(v) for k, v in f.items() if k in ("x", "y", "n")}, {"plan": f["plan"]},
                     {"flag": f["flag"]}, [], json.dumps(i % 2), "ok", {}])
    ch_client.insert("driftline.predictions", rows, column_names=[
        "event_id", "timestamp", "model", "model_version", "variant", "request_id", "features_num",
        "features_str", "features_bool", "features_null", "prediction", "status", "tags"])
    code, out = _cli(chstore, "reference", "set", "--model", "logm", "--version", "v9", "--first-events", "150",
                     "--window-size", "20")
    assert code == 0 and "150 rows" in out
    assert "warning: reference of 150 events; 200 recommended for 20-event windows" in out
    code, out = _cli(chstore, "reference", "set", "--model", "logm", "--version", "v9",
                     "--from", "2026-01-01T00:01:40Z", "--to", "2026-01-01T00:03:20Z")
    assert code == 0 and "100 rows" in out
    ref = ReferenceStore(ch_client).load("logm", "v9")
    assert ref.n_rows == 100 and ref.features["flag"].dtype == "bool" and ref.features["x"].kind == "numeric"
    code, _ = _cli(chstore, "reference", "set", "--model", "nope", "--version", "v1", "--first-events", "10")
    assert code == 2


def test_set_with_labels_stores_the_estimator_and_show_says_so(chstore, ch_client, tmp_path, capsys):
    from driftline.detectors.estimate_fit import Fitted

    rng = random.Random(3)
    rows = []
    for i in range(2000):
        p = rng.random()
        rows.append({"x": p + rng.gauss(0, 0.1), "score": p,
                     "y": (int(rng.random() < p) if i % 4 else None)})  # a quarter unlabelled
    pd.DataFrame(rows).to_csv(tmp_path / "labelled.csv", index=False)
    code, out = _cli(chstore, "reference", "set", "--model", "est-cli", "--version", "v1", "--file",
                     str(tmp_path / "labelled.csv"), "--prediction-column", "score", "--labels", "y")
    assert code == 0, capsys.readouterr().err
    assert "labels: 1,500 labelled rows; performance estimator CBPE (file:labelled.csv:y)" in out
    ref = ReferenceStore(ch_client).load("est-cli", "v1")
    assert "y" not in ref.features and ref.estimator["classes"] == ["0", "1"]
    # Reloaded from the store, it estimates: calibrated scores around 0.75 accuracy. A binary row is
    # P(classes[1]); rows scored above 0.5 are all predicted positive, so recall is ~1 (it would be 0
    # if the estimator read the score as P(classes[0])).
    est = Fitted(ref.estimator).estimate([r["score"] for r in rows[:1000]], 0.95)
    assert 0.7 < est["accuracy"].value < 0.8 and est["accuracy"].lower < est["accuracy"].value
    high = Fitted(ref.estimator).estimate([r["score"] for r in rows[:1000] if r["score"] > 0.5], 0.95)
    assert high["recall"].value > 0.95 and 0.65 < high["precision"].value < 0.85
    code, out = _cli(chstore, "reference", "show", "--model", "est-cli", "--version", "v1")
    assert code == 0 and "labels: 1,500 labelled rows; performance estimator CBPE" in out
    # A reference without labels says it has none; --labels without predictions is refused.
    code, _ = _cli(chstore, "reference", "set", "--model", "est-cli", "--version", "v2", "--file",
                   str(tmp_path / "labelled.csv"), "--exclude", "y", "--exclude", "score")
    code, out = _cli(chstore, "reference", "show", "--model", "est-cli", "--version", "v2")
    assert code == 0 and "labels: none" in out
    code, _ = _cli(chstore, "reference", "set", "--model", "est-cli", "--version", "v3", "--file",
                   str(tmp_path / "labelled.csv"), "--labels", "y")
    assert code == 2 and "--labels needs --file and --prediction-column" in capsys.readouterr().err
