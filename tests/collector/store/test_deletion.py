"""Deletion on request against the real embedded store (chDB behind ClickHouse's HTTP interface)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

clickhouse_connect = pytest.importorskip("clickhouse_connect")

from driftline.collector.embedded.chstore import start_chstore  # noqa: E402
from driftline.collector.store.deletion import DeletionError, delete_rows, redact_predicate  # noqa: E402
from driftline.collector.pii.scrub import hash_value  # noqa: E402
from driftline.collector.store.tables import migrate  # noqa: E402
from driftline.sdk.errors import ConfigError  # noqa: E402
from driftline.sdk.ids import uuid7  # noqa: E402

pytestmark = pytest.mark.integration
KEY = b"k" * 32


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("deletion-ch")
    with start_chstore(data_dir) as s:
        s.data_dir = data_dir  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def client(store):
    c = clickhouse_connect.get_client(host=store.host, port=store.port)
    migrate(c)
    return c


def _insert(client, user: str, n: int = 2, with_outcome_by_request: bool = True) -> list[str]:
    ids = []
    for i in range(n):
        pid, req = uuid7(), f"req-{user}-{i}"
        ids.append(pid)
        client.command(
            "INSERT INTO driftline.predictions (event_id, timestamp, model, model_version, variant, "
            "request_id, features_str, prediction, status, error, tags) VALUES "
            f"('{pid}', now64(6), 'churn', '1', 'primary', '{req}', map('note', 'hello from {user}'), "
            f"'0.5', 'ok', '', map('user_id', '{user}'))")
        client.command(
            "INSERT INTO driftline.labels (event_id, timestamp, model, model_version, prediction_id, "
            f"label, tags) VALUES ('{uuid7()}', now64(6), 'churn', '1', '{pid}', '1', map())")
        client.command(
            "INSERT INTO driftline.outcomes (event_id, timestamp, model, prediction_id, request_id, "
            f"name, value, tags) VALUES ('{uuid7()}', now64(6), 'churn', '{pid}', '', 'click', 1, map())")
        if with_outcome_by_request:
            client.command(
                "INSERT INTO driftline.outcomes (event_id, timestamp, model, prediction_id, request_id, "
                f"name, value, tags) VALUES ('{uuid7()}', now64(6), 'churn', NULL, '{req}', 'revenue', 9.5, map())")
    return ids


def _count(client, table: str, cond: str) -> int:
    return client.command(f"SELECT count() FROM driftline.{table} WHERE {cond}")


def test_delete_by_where_removes_rows_everywhere_and_audits(client):
    user = "alice-" + uuid7()[-6:]
    ids = _insert(client, user)
    other = _insert(client, "bob-" + uuid7()[-6:])
    report = delete_rows(client, where=f"tags['user_id'] = '{user}'", requested_by="dpo", hash_key=KEY)
    assert dict(report.counts) == {"predictions": 2, "labels": 2, "outcomes": 4}
    id_list = ", ".join(f"'{i}'" for i in ids)
    assert _count(client, "predictions", f"event_id IN ({id_list})") == 0
    assert _count(client, "labels", f"prediction_id IN ({id_list})") == 0
    assert _count(client, "outcomes", f"prediction_id IN ({id_list}) OR request_id LIKE 'req-{user}-%'") == 0
    other_list = ", ".join(f"'{i}'" for i in other)
    assert _count(client, "predictions", f"event_id IN ({other_list})") == 2
    assert _count(client, "labels", f"prediction_id IN ({other_list})") == 2
    audit = client.query(
        "SELECT table_name, rows_deleted, requested_by, predicate FROM driftline.deletions "
        f"WHERE deletion_id = '{report.deletion_id}' ORDER BY table_name").result_rows
    assert [(t, n, by) for t, n, by, _ in audit] == [("labels", 2, "dpo"), ("outcomes", 4, "dpo"),
                                                      ("predictions", 2, "dpo")]
    # The audit keeps the predicate's shape but not the person's identifier.
    assert all(user not in p and hash_value(KEY, user) in p for *_, p in audit)


def test_delete_by_prediction_id_and_dry_run(client):
    ids = _insert(client, "carol-" + uuid7()[-6:], n=3, with_outcome_by_request=False)
    dry = delete_rows(client, prediction_ids=[ids[0]], dry_run=True)
    assert dry.dry_run and dict(dry.counts) == {"predictions": 1, "labels": 1, "outcomes": 1}
    assert _count(client, "predictions", f"event_id = '{ids[0]}'") == 1
    assert _count(client, "deletions", f"deletion_id = '{dry.deletion_id}'") == 0
    report = delete_rows(client, prediction_ids=[ids[0], ids[1].upper()], requested_by="support", mode="lightweight")
    assert dict(report.counts) == {"predictions": 2, "labels": 2, "outcomes": 2}
    assert _count(client, "predictions", f"event_id IN ('{ids[0]}', '{ids[1]}')") == 0
    assert _count(client, "predictions", f"event_id = '{ids[2]}'") == 1
    assert _count(client, "deletions", f"deletion_id = '{report.deletion_id}'") == 3


def test_nothing_matches_still_audited_with_zero_counts(client):
    report = delete_rows(client, where="tags['user_id'] = 'nobody-at-all'")
    assert dict(report.counts) == {"predictions": 0, "labels": 0, "outcomes": 0}
    rows = client.query(f"SELECT sum(rows_deleted), count() FROM driftline.deletions "
                        f"WHERE deletion_id = '{report.deletion_id}'").result_rows
    assert rows == [(0, 3)]


def test_predicate_only_valid_on_predictions_is_skipped_elsewhere(client):
    user = "dave-" + uuid7()[-6:]
    _insert(client, user, n=1)
    report = delete_rows(client, where=f"features_str['note'] = 'hello from {user}'")
    assert set(report.predicate_skipped) == {"labels", "outcomes"}
    assert dict(report.counts) == {"predictions": 1, "labels": 1, "outcomes": 2}


def test_bad_arguments_and_bad_predicate(client):
    with pytest.raises(ConfigError, match="either"):
        delete_rows(client)
    with pytest.raises(ConfigError, match="either"):
        delete_rows(client, prediction_ids=[uuid7()], where="1")
    with pytest.raises(ConfigError, match="not a UUID"):
        delete_rows(client, prediction_ids=["x'; DROP TABLE t"])
    with pytest.raises(DeletionError, match="evaluate --where on predictions"):
        delete_rows(client, where="no_such_column = 1")


def test_redact_predicate():
    assert redact_predicate("tags['user_id'] = 'a''b' AND model = 'x'") == \
        "tags['<redacted>'] = '<redacted>' AND model = '<redacted>'"
    assert redact_predicate("tags['u'] = 'ann'", KEY) == f"tags['{hash_value(KEY, 'u')}'] = '{hash_value(KEY, 'ann')}'"


def test_optimize_purges_rows_from_active_parts_on_disk(client, store):
    """After delete + OPTIMIZE FINAL no active part holds the value; old parts wait for cleanup."""
    marker = "zed-" + uuid7()[-12:]
    _insert(client, marker, n=1)

    def grep_active_parts() -> subprocess.CompletedProcess[str]:
        active = client.query("SELECT path FROM system.parts WHERE database = 'driftline' "
                              "AND table = 'predictions' AND active").result_rows
        assert active
        return subprocess.run(["grep", "-rl", marker, *[p for (p,) in active]], capture_output=True, text=True)

    before = grep_active_parts()
    assert before.returncode == 0 and before.stdout  # the value is on disk, readable by grep
    delete_rows(client, where=f"tags['user_id'] = '{marker}'", optimize=True, mode="lightweight")
    after = grep_active_parts()
    assert after.returncode == 1, after.stderr  # 1: every file read, no match
    # The mutation log names rows by UUID only, never by the predicate's literal.
    mutations = client.query("SELECT command FROM system.mutations WHERE database = 'driftline'").result_rows
    assert mutations and not any(marker in c for (c,) in mutations)


def test_cli_delete_json(client, store, monkeypatch, capsys):
    from driftline.collector.store import deletion_cli

    user = "erin-" + uuid7()[-6:]
    _insert(client, user, n=1)
    parser = argparse.ArgumentParser()
    deletion_cli.register(parser.add_subparsers())
    args = parser.parse_args(["delete", "--where", f"tags['user_id'] = '{user}'", "--json",
                              "--clickhouse-url", store.url, "--requested-by", "cli-test"])
    monkeypatch.delenv("DRIFTLINE_PII_HASH_KEY", raising=False)
    assert args.handler(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"predictions": 1, "labels": 1, "outcomes": 2}
    assert _count(client, "predictions", f"tags['user_id'] = '{user}'") == 0


def test_cli_help_lists_delete():
    proc = subprocess.run([sys.executable, "-c", "import argparse\nfrom driftline.collector.store import deletion_cli\n"
                           "p = argparse.ArgumentParser(); deletion_cli.register(p.add_subparsers())\n"
                           "p.parse_args(['delete', '--help'])"], capture_output=True, text=True)
    assert "--prediction-id" in proc.stdout and "--where" in proc.stdout


def test_a_deletion_rolls_the_feature_rollup_again(client):
    """The feature rollup's closed hours held the deleted values (its bins keep min and max): rolled
    again from what is left, the older roll's rows gone."""
    from driftline.collector.store.feature_rolls import roll_closed
    from driftline.collector.store.rollup_sql import rolled_rows

    model = "fr-" + uuid7()[-6:]
    # enough predictions in the hour, before and after, to be rolled into bins (ROLL_MIN_VALUES)
    client.command(
        "INSERT INTO driftline.predictions (event_id, timestamp, model, model_version, variant, request_id, "
        "features_num, prediction, status, error, tags) SELECT generateUUIDv4(number), "
        f"toDateTime64('2026-03-04 10:00:00', 6, 'UTC') + number * 0.2, '{model}', '1', 'primary', toString(number), "
        "map('income', 1000 * (number % 3 + 1)), '0.5', 'ok', '', "
        "map('user_id', if(number % 3 = 2, 'eve', 'dan')) FROM numbers(15000)")
    assert roll_closed(client) >= 1

    def rolled():
        return client.query(f"SELECT sum(n), max(hi) FROM driftline.rollup_features_1h WHERE model = '{model}' "
                            f"AND {rolled_rows()}").result_rows[0]

    assert rolled() == (15000, 3000.0)
    delete_rows(client, where=f"model = '{model}' AND tags['user_id'] = 'eve'", optimize=True)
    assert rolled() == (10000, 2000.0)  # eve's income no longer the hour's maximum
    left = client.query(f"SELECT count(), max(hi) FROM driftline.rollup_features_1h "
                        f"WHERE model = '{model}'").result_rows
    assert left == [(2, 2000.0)]  # no row of the older roll left (optimized: not on disk either)
