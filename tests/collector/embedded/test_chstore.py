"""The embedded ClickHouse store: real chDB behind a real HTTP server, driven by clickhouse-connect
and plain HTTP (what curl sends)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import clickhouse_connect
import pandas as pd
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from driftline.collector.store import tables
from driftline.collector.embedded.chstore import ChStoreError, ChStoreSettings, start_chstore
from driftline.sdk.errors import ConfigError
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    with start_chstore(tmp_path_factory.mktemp("chstore")) as s:
        yield s


@pytest.fixture(scope="module")
def client(store):
    return clickhouse_connect.get_client(host=store.host, port=store.port)


def http(store, query: str | None = None, body: bytes | None = None, method: str = "POST",
         headers: dict[str, str] | None = None, **params: str) -> tuple[int, bytes, dict[str, str]]:
    if query is not None:
        params["query"] = query
    url = f"{store.url}/?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_ping_and_version(store, client):
    assert http(store, method="GET")[1] == b"Ok.\n"
    status, body, _ = http(store, method="GET", headers={}) if False else (0, b"", {})
    req = urllib.request.urlopen(f"{store.url}/ping", timeout=10)
    assert req.read() == b"Ok.\n"
    assert client.server_version.startswith("26.")
    assert client.command("SELECT 1 + 1") == 2


# (clickhouse-connect 1.12 cannot send "deflate" itself: its compressor map lacks it; see below.)
@pytest.mark.parametrize("compress", [True, False, "lz4", "zstd", "gzip"])
def test_insert_and_query_with_every_compression(store, compress):
    c = clickhouse_connect.get_client(host=store.host, port=store.port, compress=compress)
    table = f"t_comp_{str(compress).lower()}"
    c.command(f"CREATE TABLE {table} (a UInt64, s String, m Map(LowCardinality(String), Float64)) "
              "ENGINE = MergeTree ORDER BY a")
    # 100k rows is several Native blocks for clickhouse-connect (block size ~ 2 MiB / row size).
    rows = [[i, f"s{i % 97}", {"x": float(i), "y": 1.0}] for i in range(100_000)]
    summary = c.insert(table, rows, column_names=["a", "s", "m"])
    assert summary.written_rows == 100_000
    assert c.query(f"SELECT count(), sum(m['x']), uniqExact(s) FROM {table}").result_rows == [
        (100_000, float(sum(range(100_000))), 97)]
    df = c.query_df(f"SELECT a, s FROM {table} ORDER BY a LIMIT 3")
    assert list(df["a"]) == [0, 1, 2] and list(df["s"]) == ["s0", "s1", "s2"]
    arrow = c.query_arrow(f"SELECT a FROM {table} WHERE a < 10")
    assert arrow.num_rows == 10


@pytest.mark.parametrize("encoding", ["deflate", "gzip", "zstd", "lz4"])
def test_compressed_curl_bodies_and_responses(store, encoding):
    import zlib

    import lz4.frame
    from backports import zstd

    def gzip(b: bytes) -> bytes:
        c = zlib.compressobj(wbits=31)
        return c.compress(b) + c.flush()

    enc = {"deflate": zlib.compress, "zstd": zstd.compress, "lz4": lz4.frame.compress, "gzip": gzip}[encoding]
    table = f"enc_{encoding}"
    http(store, f"CREATE TABLE {table} (a UInt32) ENGINE = MergeTree ORDER BY a")
    # Two frames/members back to back, as clickhouse-connect sends one per block.
    body = enc(f"INSERT INTO {table} FORMAT TSV\n1\n2\n".encode()) + enc(b"3\n")
    status, resp, _ = http(store, body=body, headers={"Content-Encoding": encoding})
    assert status == 200, resp
    status, resp, headers = http(store, f"SELECT sum(a) FROM {table}", enable_http_compression="1",
                                 headers={"Accept-Encoding": encoding})
    assert headers.get("Content-Encoding") == encoding
    decode = {"deflate": zlib.decompress, "zstd": zstd.decompress, "lz4": lz4.frame.decompress,
              "gzip": lambda b: zlib.decompress(b, wbits=31)}[encoding]
    assert decode(resp) == b"6\n"
    # Without enable_http_compression=1 a real server answers uncompressed.
    assert http(store, f"SELECT sum(a) FROM {table}", headers={"Accept-Encoding": encoding})[1] == b"6\n"


def test_insert_df_and_query_df_roundtrip(client):
    client.command("CREATE TABLE df_t (id UInt32, name String, score Float64, ts DateTime64(6, 'UTC')) "
                   "ENGINE = MergeTree ORDER BY id")
    ts = pd.Timestamp("2026-11-24T03:22:12.123456Z")
    df = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "ć"], "score": [0.5, 1.5, 2.5],
                       "ts": [ts, ts, ts]})
    client.insert_df("df_t", df)
    back = client.query_df("SELECT * FROM df_t ORDER BY id")
    assert list(back["name"]) == ["a", "b", "ć"]
    assert list(back["score"]) == [0.5, 1.5, 2.5]
    assert back["ts"].iloc[0].value // 1000 == ts.value // 1000


def test_errors_carry_clickhouse_message_and_code(store, client):
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM no_such_table")
    assert "UNKNOWN_TABLE" in str(info.value) and "code: 60" in str(info.value)
    with pytest.raises(DatabaseError, match="SYNTAX_ERROR"):
        client.command("SELEC 1")
    status, body, headers = http(store, "SELECT * FROM no_such_table")
    assert status == 404
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:")


def test_settings_are_enforced_by_clickhouse_per_request(store, client):
    status, body, headers = http(store, "SELECT number FROM numbers(1000000)", max_result_rows="10",
                                 result_overflow_mode="throw")
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "396", body
    # The limit did not stay on the connection.
    assert http(store, "SELECT count() FROM (SELECT number FROM numbers(100000))")[1] == b"100000\n"
    assert http(store, "SELECT 1", no_such_setting_xyz="1")[0] == 400
    # Harmless HTTP-interface parameters clickhouse-connect and others send.
    status, body, _ = http(store, "SELECT 7", session_timeout="60", wait_end_of_query="1",
                           send_progress_in_http_headers="1", client_protocol_version="54405",
                           enable_http_compression="0", query_id="q-1")
    assert (status, body) == (200, b"7\n")


def test_format_database_and_query_parameters(store, client):
    client.command("CREATE DATABASE IF NOT EXISTS other")
    client.command("CREATE TABLE other.x (a UInt8) ENGINE = MergeTree ORDER BY a")
    client.command("INSERT INTO other.x VALUES (5)")
    status, body, headers = http(store, "SELECT a FROM x", database="other", default_format="JSONEachRow")
    assert (status, json.loads(body)) == (200, {"a": 5})
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    _, body, _ = http(store, "SELECT a FROM x FORMAT CSV", headers={"X-ClickHouse-Database": "other"})
    assert body == b"5\n"
    _, body, _ = http(store, "SELECT {n:UInt8} * 2", param_n="21")
    assert body == b"42\n"
    # clickhouse-connect's server-side binding uses the same param_ mechanism.
    assert client.query("SELECT {n:String}", parameters={"n": "it's"}).result_rows == [("it's",)]


def test_session_settings_persist_only_in_their_session(store):
    sid = str(uuid.uuid4())
    assert http(store, "SET max_threads = 3", session_id=sid)[0] == 200
    get = "SELECT value FROM system.settings WHERE name = 'max_threads'"
    assert http(store, get, session_id=sid)[1] == b"3\n"
    assert http(store, get)[1] != b"3\n"
    # USE without a session does not leak into other requests either.
    http(store, "USE system")
    assert http(store, "SELECT currentDatabase()")[1] == b"default\n"


def test_curl_style_inserts(store, client):
    client.command("CREATE TABLE curl_t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    assert http(store, "INSERT INTO curl_t FORMAT TabSeparated", b"1\tone\n2\ttwo\n")[0] == 200
    assert http(store, body=b"INSERT INTO curl_t FORMAT JSONEachRow\n"
                b'{"id": 3, "name": "three"}\n{"id": 4, "name": "four"}\n')[0] == 200
    assert http(store, "INSERT INTO curl_t FORMAT CSV", b'5,"five"\n')[0] == 200
    assert http(store, body=b"INSERT INTO curl_t VALUES (6, 'six')")[0] == 200
    assert client.query("SELECT id, name FROM curl_t ORDER BY id").result_rows == [
        (1, "one"), (2, "two"), (3, "three"), (4, "four"), (5, "five"), (6, "six")]
    status, body, headers = http(store, "INSERT INTO curl_t FORMAT TabSeparated", b"x\tbad\n")
    assert status >= 400 and headers["X-ClickHouse-Exception-Code"] != "0" and b"DB::Exception" in body
    assert client.command("SELECT count() FROM curl_t") == 6


def _insert_spools() -> set[str]:
    import tempfile

    return {p.name for p in Path(tempfile.gettempdir()).glob("driftline-insert-*")}


def test_an_insert_that_fails_after_parsing_is_an_error_in_every_format(store, client):
    """chDB 4.4's streaming insert (send_insert / insert_done) reports success, with written rows,
    for an insert a CHECK constraint refuses or whose materialized view throws, and stores nothing
    or only the source table's rows. Through the store every such insert is an error, as on a real
    server, whatever the client and format; and its body's spool file is gone either way."""
    client.command("CREATE TABLE refusing (a Int64, CONSTRAINT small CHECK a < 10) ENGINE = MergeTree ORDER BY a")
    client.command("CREATE TABLE fed (a Int64) ENGINE = MergeTree ORDER BY a")
    client.command("CREATE TABLE feeding (a Int64) ENGINE = MergeTree ORDER BY a")
    client.command("CREATE MATERIALIZED VIEW feeding_mv TO fed AS SELECT a + throwIf(a = 20, 'view failed') AS a "
                   "FROM feeding")
    spools = _insert_spools()
    for table, code, says in (("refusing", "469", b"Constraint `small`"), ("feeding", "395", b"view failed")):
        for fmt, rows in (("TabSeparated", b"1\n20\n"), ("JSONEachRow", b'{"a": 1}\n{"a": 20}\n'),
                          ("CSV", b"1\n20\n")):
            status, body, headers = http(store, f"INSERT INTO {table} FORMAT {fmt}", rows)
            assert status == 500 and headers["X-ClickHouse-Exception-Code"] == code and says in body, (fmt, body)
        with pytest.raises(DatabaseError, match=code):  # clickhouse-connect's Native insert
            client.insert(table, [[1], [20]], column_names=["a"])
        with pytest.raises(DatabaseError, match=code):  # its JSONEachRow raw insert (the collector's writer)
            client.raw_insert(table, column_names=["a"], insert_block=b'{"a": 1}\n{"a": 20}', fmt="JSONEachRow")
    assert client.command("SELECT count() FROM refusing") == 0  # the constraint refuses the whole block
    assert client.command("SELECT count() FROM fed") == 0  # the view wrote nothing; as on a server, its
    assert client.command("SELECT count() FROM feeding") == 10  # source kept the rows (5 inserts x 2)
    # A good insert still works, SETTINGS in the statement included, and reports its rows.
    status, _, headers = http(store, body=b"INSERT INTO feeding SETTINGS max_insert_threads = 1 FORMAT CSV\n1\n2\n")
    assert status == 200 and json.loads(headers["X-ClickHouse-Summary"])["written_rows"] == "4"  # 2 + 2 by the view
    assert client.command("SELECT count() FROM fed") == 2
    # Left files would stay; another process's insert in flight would go within moments.
    wait_for(lambda: _insert_spools() <= spools, timeout_s=10)


WRITES = [
    "INSERT INTO ro_t VALUES (99)",
    "INSERT INTO ro_t SELECT 98",
    "INSERT INTO ro_t SETTINGS readonly = 0 VALUES (97)",
    "CREATE TABLE ro_new (a UInt8) ENGINE = MergeTree ORDER BY a",
    "DROP TABLE ro_t",
    "ALTER TABLE ro_t ADD COLUMN b String",
    "ALTER TABLE ro_t DELETE WHERE 1",
    "DELETE FROM ro_t WHERE 1",
    "TRUNCATE TABLE ro_t",
    "RENAME TABLE ro_t TO ro_t2",
    "SET readonly = 0",
    "SELECT 1; INSERT INTO ro_t VALUES (96)",
    "SELECT 1; DROP TABLE ro_t",
]


@pytest.fixture(scope="module")
def ro_table(client):
    client.command("CREATE TABLE ro_t (a UInt8) ENGINE = MergeTree ORDER BY a")
    client.command("INSERT INTO ro_t VALUES (1), (2)")
    return "ro_t"


def _unchanged(client) -> None:
    assert client.query("SELECT a FROM ro_t ORDER BY a").result_rows == [(1,), (2,)]
    assert client.command("SELECT count() FROM system.columns WHERE table = 'ro_t'") == 1
    assert client.command("EXISTS TABLE ro_new") == 0


@pytest.mark.parametrize("statement", WRITES)
@pytest.mark.parametrize("how", ["readonly=1", "readonly=2", "user", "GET"])
def test_readonly_requests_refuse_every_write(store, client, ro_table, statement, how):
    if how.startswith("readonly="):
        status, body, headers = http(store, statement, readonly=how.split("=")[1])
    elif how == "user":
        status, body, headers = http(store, statement, headers={
            "Authorization": "Basic " + base64.b64encode(b"readonly:").decode()})
    else:
        status, body, headers = http(store, statement, method="GET")
    assert status == 403, body
    assert headers["X-ClickHouse-Exception-Code"] == "164" and b"(READONLY)" in body
    _unchanged(client)
    # The writer is not poisoned by what the read-only request tried.
    assert http(store, "INSERT INTO ro_scratch VALUES (1)")[0] in (200, 404)


def test_readonly_user_via_clickhouse_connect(store, client, ro_table):
    ro = clickhouse_connect.get_client(host=store.host, port=store.port, username="readonly")
    assert ro.query("SELECT a FROM ro_t ORDER BY a").result_rows == [(1,), (2,)]
    assert len(ro.query_df("SELECT * FROM ro_t")) == 2
    with pytest.raises(DatabaseError, match="READONLY"):
        ro.insert("ro_t", [[3]], column_names=["a"])
    with pytest.raises(DatabaseError, match="READONLY"):
        ro.command("DROP TABLE ro_t")
    _unchanged(client)


def test_authentication(store):
    bad = {"Authorization": "Basic " + base64.b64encode(b"mallory:x").decode()}
    status, body, headers = http(store, "SELECT 1", headers=bad)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (401, "516")
    assert http(store, "SELECT 1", headers={"X-ClickHouse-User": "default"})[1] == b"1\n"


def test_writer_state_is_restored_after_set_statements(store, client):
    client.command("CREATE TABLE IF NOT EXISTS ro_scratch (a UInt8) ENGINE = MergeTree ORDER BY a")
    for _ in range(3):  # more requests than pooled connections, so every connection was used
        assert http(store, "SET readonly = 1")[0] == 200
        assert http(store, "SELECT 1; SET readonly = 1")[0] == 200
    for _ in range(4):
        assert http(store, "INSERT INTO ro_scratch VALUES (1)")[0] == 200


def test_concurrent_clients(store, client):
    client.command("CREATE TABLE conc (a UInt64) ENGINE = MergeTree ORDER BY a")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            c = clickhouse_connect.get_client(host=store.host, port=store.port)
            for i in range(10):
                c.insert("conc", [[n * 100 + i]], column_names=["a"])
                c.query("SELECT count() FROM conc")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.command("SELECT count() FROM conc") == 60


def test_real_ddl_predictions_final_and_labeled_view(client):
    tables.migrate(client)
    tables.migrate(client)  # idempotent
    pid = uuid.uuid4()
    ts = datetime(2026, 11, 24, 3, 22, 12, 123456, tzinfo=timezone.utc)
    row = {
        "event_id": pid, "timestamp": ts, "model": "churn", "model_version": "v1", "variant": "primary",
        "request_id": "r1", "features_num": {"age": 41.0}, "features_str": {"plan": "pro"},
        "features_bool": {"trial": True}, "features_null": ["coupon"], "prediction": "0.8",
        "prediction_num": 0.8, "prediction_label": None, "prediction_scores": {},
        "latency_ms": 3.5, "status": "ok", "error": "", "tags": {"region": "eu"},
    }
    cols = list(row)
    # The same event twice (a replay): FINAL collapses it.
    client.insert("driftline.predictions", [list(row.values())] * 2, column_names=cols)
    client.insert("driftline.labels", [[uuid.uuid4(), ts, "churn", "v1", pid, "1", 1.0, None, {}]],
                  column_names=["event_id", "timestamp", "model", "model_version", "prediction_id",
                                "label", "label_num", "label_str", "tags"])
    assert client.command("SELECT count() FROM driftline.predictions FINAL") == 1
    r = client.query("SELECT event_id, features_num['age'], features_bool['trial'], label_num "
                     "FROM driftline.labeled_predictions FINAL").result_rows
    assert r == [(pid, 41.0, True, 1.0)]
    df = client.query_df("SELECT * FROM driftline.predictions FINAL")
    assert df["tags"].iloc[0] == {"region": "eu"}


def test_data_persists_across_restart_and_dir_is_exclusive(tmp_path: Path):
    with start_chstore(tmp_path) as s:
        c = clickhouse_connect.get_client(host=s.host, port=s.port)
        c.command("CREATE TABLE keep (a UInt64) ENGINE = MergeTree ORDER BY a")
        c.insert("keep", [[i] for i in range(1000)], column_names=["a"])
        with pytest.raises(ChStoreError, match="in use by pid"):
            start_chstore(tmp_path)
    with start_chstore(tmp_path) as s2:
        c2 = clickhouse_connect.get_client(host=s2.host, port=s2.port)
        assert c2.command("SELECT count() FROM keep") == 1000
        assert c2.command("SELECT sum(a) FROM keep") == sum(range(1000))
    assert s2.proc.returncode == 0


def test_sigterm_finishes_in_flight_query_and_sigkill_leaves_dir_reusable(tmp_path: Path):
    import os
    import signal
    import time

    s = start_chstore(tmp_path)
    c = clickhouse_connect.get_client(host=s.host, port=s.port)
    c.command("CREATE TABLE k (a UInt64) ENGINE = MergeTree ORDER BY a")
    c.insert("k", [[i] for i in range(100)], column_names=["a"])
    os.kill(s.pid, signal.SIGKILL)  # a crash: no clean close of chDB, no lock release by us
    s.stop()
    with start_chstore(tmp_path) as s2:
        c2 = clickhouse_connect.get_client(host=s2.host, port=s2.port)
        assert c2.command("SELECT count() FROM k") == 100
        result: dict[str, object] = {}
        started = threading.Event()

        def slow() -> None:
            started.set()
            try:
                result["rows"] = c2.query("SELECT sleepEachRow(0.5), number FROM numbers(3)").row_count
            except BaseException as exc:  # noqa: BLE001 - asserted below
                result["error"] = exc

        t = threading.Thread(target=slow)
        t.start()
        started.wait()
        time.sleep(0.3)  # the query is now sleeping inside ClickHouse
        assert s2.stop(timeout_s=30) == 0
        t.join()
    assert result == {"rows": 3}


def test_session_readonly_and_limits(store, client, ro_table):
    sid = str(uuid.uuid4())
    assert http(store, "SET readonly = 1", session_id=sid)[0] == 200
    status, body, _ = http(store, "INSERT INTO ro_t VALUES (50)", session_id=sid)
    assert status == 403 and b"READONLY" in body
    assert http(store, "SELECT count() FROM ro_t", session_id=sid)[1] == b"2\n"
    _unchanged(client)
    status, body, headers = http(store, "SELECT count() FROM numbers(100000000000)",
                                 max_execution_time="0.5")
    assert headers["X-ClickHouse-Exception-Code"] == "159", body  # TIMEOUT_EXCEEDED
    status, body, headers = http(store, "SELECT 1", session_id=sid, readonly="0")
    assert status == 200  # still read-only, but reading is fine


def test_oversized_query_is_refused(store):
    status, body, headers = http(store, body=b"SELECT '" + b"x" * (17 << 20) + b"'")
    assert status == 400 and b"too large" in body
    assert http(store, "SELECT 1")[1] == b"1\n"


def test_engine_caches_are_sized_for_a_laptop_not_a_server(store, client, tmp_path: Path):
    """ClickHouse's mark, index-mark and primary-index caches default to 5 GiB each; the store
    starts chDB with --cache-mib (64 by default), and the engine reports that value."""
    sizes = dict(client.query("SELECT name, value FROM system.server_settings WHERE name IN "
                              "('mark_cache_size', 'index_mark_cache_size', 'primary_index_cache_size')").result_rows)
    assert sizes == {name: str(64 * 2**20) for name in
                     ("mark_cache_size", "index_mark_cache_size", "primary_index_cache_size")}
    with start_chstore(tmp_path, extra_args=("--cache-mib", "8")) as small:
        c = clickhouse_connect.get_client(host=small.host, port=small.port)
        assert str(c.command("SELECT value FROM system.server_settings WHERE name = 'mark_cache_size'")) == str(8 * 2**20)
    with pytest.raises(ChStoreError, match="cache_mib must be >= 1"):
        start_chstore(tmp_path, extra_args=("--cache-mib", "0"))


def test_outdated_parts_wait_seconds_not_minutes_for_removal(store, client, tmp_path: Path):
    """Every merge leaves outdated parts on disk until MergeTree's cleanup task runs, which backs
    off to 300 s by default (minutes of merged-away parts in a soak); the store's config file bounds
    it, and the engine reports the values for every table."""
    wanted = ChStoreSettings(data_dir=tmp_path).merge_tree_settings()
    assert wanted == {"cleanup_delay_period": "5", "max_cleanup_delay_period": "30"}
    actual = dict(client.query("SELECT name, value FROM system.merge_tree_settings WHERE changed").result_rows)
    assert {k: actual.get(k) for k in wanted} == wanted
    with pytest.raises(ConfigError, match="cleanup_delay_s < max_cleanup_delay_s"):
        ChStoreSettings(data_dir=tmp_path, cleanup_delay_s=30, max_cleanup_delay_s=30)


def test_a_data_dir_whose_path_has_url_characters_works(tmp_path: Path):
    """chDB parses its path as ``path?setting=value&...``: a data dir named ``a&b=c?d`` is opened
    through a link without those characters; its data, config and lock live in the directory itself."""
    data_dir = tmp_path / "runs?x=1&y" / "a&b=c?d"
    wanted = ChStoreSettings(data_dir=data_dir).merge_tree_settings()
    for rows in (1000, 2000):
        with start_chstore(data_dir) as s:
            c = clickhouse_connect.get_client(host=s.host, port=s.port)
            actual = dict(c.query("SELECT name, value FROM system.merge_tree_settings WHERE changed").result_rows)
            assert {k: actual.get(k) for k in wanted} == wanted
            c.command("CREATE TABLE IF NOT EXISTS keep (a UInt64) ENGINE = MergeTree ORDER BY a")
            c.insert("keep", [[i] for i in range(1000)], column_names=["a"])
            assert c.command("SELECT count() FROM keep") == rows
        assert s.proc.returncode == 0
    assert (data_dir / "metadata").is_dir() and (data_dir / "store").is_dir()
    assert not (tmp_path / "runs").exists()
