"""deploy/clickhouse/users.d/driftline.xml loaded by the real ClickHouse engine (chDB), and the
SQL of docs/deployment.md run against the embedded store.

chDB reads ``config.xml`` from its working directory, and with it a users configuration, exactly
as clickhouse-server merges ``users.xml`` with ``users.d/*.xml``. One difference: chDB's embedded
server does not apply ``access_control_improvements`` before it parses the users file, so it
refuses ``<changeable_in_readonly/>`` (clickhouse-server, with config.d/driftline.xml, accepts it);
the test strips that one tag and checks everything else the engine makes of the file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS_D = ROOT / "deploy/clickhouse/users.d/driftline.xml"

# What clickhouse/clickhouse-server ships as /etc/clickhouse-server/users.xml, reduced to its shape.
BASE_USERS = """<clickhouse>
  <profiles><default/><readonly><readonly>1</readonly></readonly></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile>
    <quota>default</quota><access_management>1</access_management></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</clickhouse>
"""

PROBE = r"""
import json, chdb
conn = chdb.connect(":memory:")  # keep a reference: the cursor dies with it
cur = conn.cursor()
out = {}
for key, q in {
    "users": "SELECT name, auth_type, host_ip, host_names FROM system.users ORDER BY name",
    "profile": "SELECT setting_name, value, min, max FROM system.settings_profile_elements "
               "WHERE profile_name = 'driftline_readonly'",
    "user_profiles": "SELECT user_name, inherit_profile FROM system.settings_profile_elements WHERE user_name != ''",
    "reader_grants": "SHOW GRANTS FOR driftline_reader",
    "writer_grants": "SHOW GRANTS FOR driftline",
}.items():
    cur.execute(q)
    out[key] = [[str(v) for v in row] for row in cur.fetchall()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("chusers")
    (tmp / "users.d").mkdir()
    (tmp / "users.xml").write_text(BASE_USERS)
    (tmp / "users.d/driftline.xml").write_text(USERS_D.read_text().replace("<changeable_in_readonly/>", ""))
    (tmp / "config.xml").write_text(f"<clickhouse><users_config>{tmp / 'users.xml'}</users_config></clickhouse>")
    env = {**os.environ, "CLICKHOUSE_WRITER_PASSWORD": "w-secret", "CLICKHOUSE_READER_PASSWORD": "r-secret"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_users_have_passwords_and_networks(loaded: dict[str, Any]) -> None:
    users = {name: (auth, ips, hosts) for name, auth, ips, hosts in loaded["users"]}
    assert set(users) == {"default", "driftline", "driftline_reader"}
    for name in ("driftline", "driftline_reader"):
        assert "password" in users[name][0], users[name]
    # The image's passwordless default user only answers on localhost.
    assert users["default"][1] == "[]" and users["default"][2] == "['localhost']"


def test_reader_profile_is_read_only_with_bounded_limits(loaded: dict[str, Any]) -> None:
    profile = {name: (value, lo, hi) for name, value, lo, hi in loaded["profile"]}
    assert profile["readonly"][0] == "1"
    assert profile["max_execution_time"] == ("30", "1", "120")
    assert profile["max_result_rows"] == ("100000", "1", "1000000")
    assert profile["max_memory_usage"][2] == "4000000000"
    assert dict(loaded["user_profiles"]) == {"driftline_reader": "driftline_readonly",
                                             "driftline": "driftline_writer", "default": "default"}


def test_grants(loaded: dict[str, Any]) -> None:
    assert loaded["reader_grants"] == [["GRANT SELECT ON driftline.* TO driftline_reader"]]
    writer = " ".join(row[0] for row in loaded["writer_grants"])
    for privilege in ("INSERT", "ALTER TABLE", "CREATE DATABASE", "CREATE TABLE", "OPTIMIZE"):
        assert re.search(rf"\b{privilege}\b[^;]*ON driftline\.\*", writer), privilege


def test_the_guides_ttl_statements_run(tmp_path: Path) -> None:
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate

    guide = (ROOT / "docs/deployment.md").read_text()
    block = re.search(r"```sql\n(-- predictions, labels.*?)```", guide, re.S)
    assert block, "docs/deployment.md lost its TTL example"
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", block.group(1)).split(";") if s.strip()]
    assert len(statements) >= 5
    # Its own store: a TTL on the session-wide store would expire other tests' rows.
    with start_chstore(tmp_path / "ch") as store:
        client = connect(store.url)
        migrate(client)
        for statement in statements:
            client.command(statement)
        ddl = client.query("SHOW CREATE TABLE driftline.predictions").result_rows[0][0]
    assert "TTL toDateTime(timestamp) + toIntervalDay(90)" in ddl and "ttl_only_drop_parts = 1" in ddl
