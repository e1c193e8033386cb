"""``driftline rollups check`` / ``rebuild`` as a user runs them, against a store whose rollups
missed inserts (the fault chDB showed in CI: rows stored, no view run)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from driftline.collector.store.feature_rolls import roll_closed
from driftline.collector.store.rollup_sql import latest_rolls
from driftline.collector.store.writer import COLUMNS_OF, INSERT_SETTINGS, ClickHouseWriter, label_row, prediction_row
from driftline.sdk.codec import dumps
from driftline.sdk.ids import uuid7
from tests.collector.store.faults import views_detached

pytestmark = pytest.mark.integration


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftline.cli", "rollups", *args, "--clickhouse-url", url],
                          capture_output=True, text=True, timeout=120)


def _events(model: str, n: int, hour: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    preds = [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": model, "model_version": "1",
              "timestamp": f"2026-03-01T{hour:02d}:{i % 60:02d}:00.000000Z", "features": {"x": float(i)},
              "prediction": i % 2} for i in range(n)]
    labels = [{"schema_version": 1, "type": "label", "event_id": uuid7(), "model": model, "model_version": "1",
               "timestamp": p["timestamp"], "prediction_id": p["event_id"], "label": 1} for p in preds[::2]]
    return preds, labels


def _insert_without_views(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows stored straight into ``table`` with its views detached: no rollup counts them."""
    with views_detached(client, table):
        client.raw_insert(f"driftline.{table}", column_names=list(COLUMNS_OF[table]), fmt="JSONEachRow",
                          insert_block=b"\n".join(dumps(r) for r in rows), settings=INSERT_SETTINGS)


def test_check_finds_the_missed_inserts_and_rebuild_mends_them(own_store: Any, own_store_url: str) -> None:
    ok, bad = f"ok-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    writer = ClickHouseWriter(own_store)
    for events in _events(ok, 50, 10):
        writer.write(events)
    good = _cli(own_store_url, "check")
    assert good.returncode == 0 and "consistent" in good.stdout, good.stdout + good.stderr

    preds, labels = _events(bad, 40, 11)
    writer.write(preds[:10])  # counted
    _insert_without_views(own_store, "predictions", [prediction_row(e) for e in preds[10:]])
    _insert_without_views(own_store, "labels", [label_row(e) for e in labels])
    found = _cli(own_store_url, "check", "--json", "--recheck-s", "0.2")
    assert found.returncode == 1, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert report["consistent"] is False and report["missing"] == []
    got = {(d["table"], d["rollup"], d["model"], d["hour"], d["raw"], d["rollup_rows"]) for d in report["differences"]}
    hour = "2026-03-01T11:00:00"
    # (the feature rollup has no view to miss: its hours are rolled from the raw rows, none yet here)
    assert got == {("predictions", "rollup_predictions_1m", bad, hour, 40, 10),
                   ("predictions", "rollup_predictions_1h", bad, hour, 40, 10),
                   ("predictions", "rollup_labels_1m", bad, hour, 20, 0),  # every other one labelled
                   ("labels", "rollup_arrivals_1h", "*", hour, 20, 0)}
    text = _cli(own_store_url, "check", "--recheck-s", "0")
    assert text.returncode == 1
    line = f"rollup_predictions_1m misses predictions: model '{bad}', hour {hour}: 10 against 40 raw rows"
    assert line in text.stdout
    assert f"rollup_arrivals_1h misses labels: every model, hour {hour}: 0 against 20 raw rows" in text.stdout
    assert f"rollup_labels_1m misses predictions: model '{bad}', hour {hour}: 0 against 20 labelled predictions" \
        in text.stdout

    refused = _cli(own_store_url, "rebuild")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert _cli(own_store_url, "check", "--recheck-s", "0").returncode == 1  # nothing was touched
    done = _cli(own_store_url, "rebuild", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    after = _cli(own_store_url, "check", "--json")
    assert after.returncode == 0 and json.loads(after.stdout) == {"consistent": True, "missing": [], "differences": []}
    labelled = own_store.query("SELECT sum(labelled) FROM driftline.rollup_labels_1m WHERE model = {m:String}",
                               parameters={"m": bad}).result_rows[0][0]
    assert labelled == 20  # the joined rollup is rebuilt too
    rolled = own_store.query(f"SELECT sum(n), max(raw) FROM ({latest_rolls()}) WHERE model = {{m:String}}",
                             parameters={"m": bad}).result_rows[0]
    assert rolled == (40, 1)  # and the feature rollup's closed hours are rolled (one feature an event; read raw: few)

    # Rows deleted from the raw log stay in the aggregates until a rebuild: named the other way.
    own_store.command("DELETE FROM driftline.predictions WHERE model = {m:String}", parameters={"m": ok})
    gone = _cli(own_store_url, "check", "--recheck-s", "0")
    assert gone.returncode == 1
    assert f"rollup_predictions_1m holds more than predictions: model '{ok}', hour 2026-03-01T10:00:00: " \
           "50 against 0 raw rows" in gone.stdout, gone.stdout


def test_check_counts_what_the_feature_rollup_and_the_label_join_count(own_store: Any, own_store_url: str) -> None:
    """No false alarm: feature values of every kind, free text (left to its own rollup), shadows
    (not served), labels before and after their prediction, a relabel and a replayed label are
    counted as the views count them; then one changed row of each rollup is found."""
    model = f"mix-{uuid.uuid4().hex[:6]}"
    text = "a free text value of many words here"  # free text by TextRule: not a category
    features = [{"x": 1.5, "n": 3, "c": "red", "b": True, "t": text, "z": None},
                {"x": -2.0, "c": "blue", "t": "short"}, {}]
    preds = [{"schema_version": 1, "type": "prediction", "event_id": uuid7(), "model": model, "model_version": "1",
              "variant": variant, "timestamp": f"2026-03-02T{hour:02d}:{i:02d}:00.000000Z",
              "features": features[i % 3], "prediction": "yes" if i % 2 else "no"}
             for hour in (8, 9) for i, variant in enumerate(["primary", "shadow", "b", "primary", "shadow:v2"] * 2)]

    def label(p: dict[str, Any], value: str, minute: int) -> dict[str, Any]:
        return {"schema_version": 1, "type": "label", "event_id": uuid7(), "model": model, "model_version": "1",
                "timestamp": p["timestamp"][:14] + f"{minute:02d}:30.000000Z", "prediction_id": p["event_id"],
                "label": value}

    early = [label(p, "yes", 59) for p in preds[:10:3]]  # before their predictions: joined by the early view
    late = [label(p, "no", 58) for p in preds[10::2]]  # shadows among them: not served, not counted
    relabel = [label(preds[12], "yes", 59)]  # a newer label: -old +new, still one labelled prediction
    writer = ClickHouseWriter(own_store)
    writer.write(early)
    writer.write(preds)
    writer.write(late)
    writer.write(relabel)
    writer.write(relabel)  # replayed: the same event id twice
    assert roll_closed(own_store, min_values=0) == 2  # the collector's roller: two (model, hour), binned
    out = _cli(own_store_url, "check", "--json", "--recheck-s", "0.2")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["consistent"] is True, out.stdout + out.stderr
    q = ("SELECT toHour(hour), sum(n) FROM driftline.rollup_features_1h WHERE model = {m:String} GROUP BY 1 ORDER BY 1")
    values = own_store.query(q, parameters={"m": model}).result_rows
    # served: 6 of 10 an hour (primary, b); a null value is no value, free text is counted elsewhere
    served = [p for p in preds if not p["variant"].startswith("shadow")]
    expect = {h: sum(sum(1 for k, v in p["features"].items() if v is not None and not (k == "t" and v == text))
                     for p in served if p["timestamp"][11:13] == f"{h:02d}") for h in (8, 9)}
    assert values == [(8, expect[8]), (9, expect[9])] and expect[8] > 0

    # one row added to each rollup: found, and named with what that rollup counts
    gen = own_store.query("SELECT max(gen) FROM driftline.rollup_feature_rolls WHERE model = {m:String} "
                          "AND hour = '2026-03-02 08:00:00'", parameters={"m": model}).result_rows[0][0]
    # (a row of the hour's latest roll counts)
    own_store.command(f"INSERT INTO driftline.rollup_features_1h (model, model_version, hour, feature, kind, "
                      f"bin, category, n, s, lo, hi, gen) "
                      f"VALUES ('{model}', '1', '2026-03-02 08:00:00', 'x', 0, 1, '', 2, 0, 0, 0, {gen})")
    own_store.command(f"INSERT INTO driftline.rollup_labels_1m (model, model_version, variant, minute, labelled) "
                      f"VALUES ('{model}', '1', 'primary', '2026-03-02 09:07:00', 1)")
    found = _cli(own_store_url, "check", "--recheck-s", "0")
    assert found.returncode == 1, found.stdout + found.stderr
    assert (f"rollup_features_1h holds more than predictions: model '{model}', hour 2026-03-02T08:00:00: "
            f"{expect[8] + 2} against {expect[8]} feature values") in found.stdout, found.stdout
    labelled = sum(1 for p in served if p["timestamp"][11:13] == "09" and any(
        lb["prediction_id"] == p["event_id"] for lb in early + late))
    assert (f"rollup_labels_1m holds more than predictions: model '{model}', hour 2026-03-02T09:00:00: "
            f"{labelled + 1} against {labelled} labelled predictions") in found.stdout, found.stdout


def test_check_names_a_rollup_the_store_lacks(own_store: Any, own_store_url: str) -> None:
    own_store.command("DROP VIEW driftline.rollup_labels_arrivals_mv")
    own_store.command("DROP VIEW driftline.rollup_outcomes_arrivals_mv")
    own_store.command("DROP TABLE driftline.rollup_arrivals_1h")
    out = _cli(own_store_url, "check")
    assert out.returncode == 1 and "rollup_arrivals_1h is missing" in out.stdout, out.stdout + out.stderr
    assert _cli(own_store_url, "rebuild", "--yes").returncode == 0
    assert _cli(own_store_url, "check").returncode == 0


@pytest.mark.parametrize("command", [["rollups", "check"], ["rollups", "rebuild", "--yes"],
                                     ["delete", "--prediction-id", "01a20bab-eb88-761d-b989-df5ec1de6fe0"],
                                     ["reference", "list"], ["alerts", "list"]])
def test_an_unreachable_store_is_one_clear_line_without_the_password(command: list[str]) -> None:
    import os

    from driftline.collector.embedded.broker import free_port

    url = f"http://ann:s3cret@127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-m", "driftline.cli", *command], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "DRIFTLINE_CLICKHOUSE_URL": url})
    # 2 for rollups (its 1 means "the rollups differ"), 1 for the others (a driftline error)
    assert out.returncode == (2 if command[0] == "rollups" else 1), out.stderr
    assert "driftline: cannot reach ClickHouse" in out.stderr, out.stderr
    if command[0] in ("rollups", "delete"):  # they know the URL and name it, without the password
        assert "at http://ann:***@127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr and "s3cret" not in out.stdout + out.stderr
