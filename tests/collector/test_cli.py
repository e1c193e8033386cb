"""The command line a user touches: bad configuration of `driftline collector`, `driftline sql`
(`driftline up`: tests/collector/embedded/test_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from driftline.collector.embedded.broker import free_port


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["collector", "--batch-size", "0"], {}, "batch_size must be >= 1"),
        (["collector", "--clickhouse-url", "ftp://db", "--kafka-bootstrap", "k:9092"], {}, "DRIFTLINE_CLICKHOUSE_URL"),
        (["collector", "--kafka-bootstrap", "nohostport", "--clickhouse-url", "http://h:8123"], {}, "host:port"),
        (["collector"], {"DRIFTLINE_KAFKA_BOOTSTRAP": "", "DRIFTLINE_CLICKHOUSE_URL": ""}, "needs --kafka-bootstrap"),
        (["collector", "--metrics-port", "99999"], {}, "DRIFTLINE_METRICS_PORT"),
        (["collector", "--detectors-config", "/nonexistent.yaml"], {}, "does not exist"),
        (["collector"], {"DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "soon"}, "batch_timeout_s"),
    ],
)
def test_bad_configuration_fails_at_start_saying_what_to_change(args: list[str], env: dict[str, str], message: str) -> None:
    out = run(*args, env=env)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_pii_config_fails_at_start(tmp_path: Path, kafka_bootstrap: str, clickhouse_url: str) -> None:
    cfg = tmp_path / "pii.yaml"
    cfg.write_text("pii:\n  defualt_policy: scrub\n")
    out = run("collector", "--pii-config", str(cfg), "--kafka-bootstrap", kafka_bootstrap,
              "--clickhouse-url", clickhouse_url, "--metrics-port", str(free_port()))
    assert out.returncode == 2
    assert "defualt_policy" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.integration
def test_sql_prints_tables_csv_json_and_refuses_writes(ch_client: Any, clickhouse_url: str) -> None:
    ch_client.command("CREATE TABLE IF NOT EXISTS driftline.cli_probe (n UInt8, s String) ENGINE = MergeTree ORDER BY n")
    ch_client.command("TRUNCATE TABLE driftline.cli_probe")
    ch_client.command("INSERT INTO driftline.cli_probe VALUES (1, 'a'), (2, 'b')")
    env = {"DRIFTLINE_CLICKHOUSE_URL": clickhouse_url}
    table = run("sql", "SELECT n, s FROM driftline.cli_probe ORDER BY n", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["n", "|", "s"] and "(2 rows)" in table.stdout
    csv_out = run("sql", "SELECT n, s FROM driftline.cli_probe ORDER BY n", "--format", "csv", env=env)
    assert csv_out.stdout.splitlines() == ["n,s", "1,a", "2,b"]
    js = run("sql", "SELECT n, s FROM driftline.cli_probe ORDER BY n", "--format", "json", env=env)
    assert json.loads(js.stdout) == [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}]
    for write in ("INSERT INTO driftline.cli_probe VALUES (3, 'c')", "DROP TABLE driftline.cli_probe",
                  "ALTER TABLE driftline.cli_probe DELETE WHERE 1", "TRUNCATE TABLE driftline.cli_probe",
                  "SELECT 1 SETTINGS readonly = 0"):
        refused = run("sql", write, env=env)
        assert refused.returncode == 1, write
        assert "readonly" in refused.stderr.lower() or "read-only" in refused.stderr.lower(), refused.stderr
    assert ch_client.query("SELECT count() FROM driftline.cli_probe").result_rows[0][0] == 2
    bad = run("sql", "SELEC oops", env=env)
    assert bad.returncode == 1 and "Syntax error" in bad.stderr and "Traceback" not in bad.stderr
    down = run("sql", "SELECT 1", env={"DRIFTLINE_CLICKHOUSE_URL": f"http://ann:s3cret@127.0.0.1:{free_port()}"})
    assert down.returncode == 1 and "cannot reach ClickHouse at http://ann:***@" in down.stderr
    assert "s3cret" not in down.stdout + down.stderr


def test_a_held_metrics_port_stops_the_collector_saying_which_and_how_to_change_it(
        kafka_bootstrap: str, clickhouse_url: str) -> None:
    from tests.collector.embedded.test_cli import HeldPort

    held = HeldPort("connection")
    try:
        out = run("collector", "--kafka-bootstrap", kafka_bootstrap, "--clickhouse-url", clickhouse_url,
                  "--metrics-port", str(held.port), timeout=120)
    finally:
        held.close()
    assert out.returncode == 2, out.stderr
    assert f"cannot serve /metrics on 127.0.0.1:{held.port} (Address already in use)" in out.stderr
    assert "DRIFTLINE_METRICS_PORT" in out.stderr and "Traceback" not in out.stderr
