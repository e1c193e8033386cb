"""``driftline rollups check`` / ``rebuild`` as a user runs them, against a store whose rollups
missed inserts (the fault chDB showed in CI: rows stored, no view run)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

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
    assert got == {("predictions", "rollup_predictions_1m", bad, hour, 40, 10),
                   ("predictions", "rollup_predictions_1h", bad, hour, 40, 10),
                   ("labels", "rollup_arrivals_1h", "*", hour, 20, 0)}
    text = _cli(own_store_url, "check", "--recheck-s", "0")
    assert text.returncode == 1
    line = f"rollup_predictions_1m misses predictions: model '{bad}', hour {hour}: 10 against 40 raw rows"
    assert line in text.stdout
    assert f"rollup_arrivals_1h misses labels: every model, hour {hour}: 0 against 20 raw rows" in text.stdout

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

    # Rows deleted from the raw log stay in the aggregates until a rebuild: named the other way.
    own_store.command("DELETE FROM driftline.predictions WHERE model = {m:String}", parameters={"m": ok})
    gone = _cli(own_store_url, "check", "--recheck-s", "0")
    assert gone.returncode == 1
    assert f"rollup_predictions_1m holds more than predictions: model '{ok}', hour 2026-03-01T10:00:00: " \
           "50 against 0 raw rows" in gone.stdout, gone.stdout


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
