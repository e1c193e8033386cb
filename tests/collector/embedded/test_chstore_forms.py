"""Conformance of the embedded store's HTTP interface: every way a real ClickHouse server takes a
query and its parameters (URL, body, multipart form fields, compressed bodies), sent as plain
HTTP (what curl sends) and through clickhouse-connect. Issue 17: clickhouse-connect's multipart
form of long bind parameters used to be read as SQL (Code 62)."""

from __future__ import annotations

import urllib.parse
import zlib
from typing import Any

import clickhouse_connect
import pytest
import urllib3
from clickhouse_connect.driver.binding import MAX_URL_BIND_PARAM_LENGTH
from clickhouse_connect.driver.exceptions import DatabaseError

pytestmark = pytest.mark.integration

_HTTP = urllib3.PoolManager(retries=False)


def _request(store: Any, method: str = "POST", body: bytes | None = None, fields: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, **params: str) -> tuple[int, bytes, Any]:
    url = f"{store.url}/?{urllib.parse.urlencode(params)}"
    if fields is not None:
        r = _HTTP.request(method, url, fields=fields, headers=headers, encode_multipart=True)
    else:
        r = _HTTP.request(method, url, body=body, headers=headers)
    return r.status, r.data, r.headers


def _gzip(b: bytes) -> bytes:
    c = zlib.compressobj(wbits=31)
    return c.compress(b) + c.flush()


def _encoders() -> dict[str, Any]:
    import lz4.frame
    from backports import zstd

    return {"gzip": _gzip, "deflate": zlib.compress, "zstd": zstd.compress, "lz4": lz4.frame.compress}


@pytest.mark.parametrize("form", [
    "get_url", "post_url", "post_body", "post_url_and_body", "url_params", "multipart_params",
    "multipart_query_and_params", "multipart_settings", "multipart_text_parts",
])
def test_every_raw_form_of_a_query_and_its_parameters(chstore: Any, form: str) -> None:
    q = "SELECT {a:UInt32} + {b:UInt32}"
    status, body, _ = {
        "get_url": lambda: _request(chstore, "GET", query="SELECT 40 + 2"),
        "post_url": lambda: _request(chstore, query="SELECT 40 + 2"),
        "post_body": lambda: _request(chstore, body=b"SELECT 40 + 2"),
        # A real server joins the URL's query and the body with a newline.
        "post_url_and_body": lambda: _request(chstore, body=b"+ 2", query="SELECT 40"),
        "url_params": lambda: _request(chstore, body=q.encode(), param_a="40", param_b="2"),
        "multipart_params": lambda: _request(chstore, fields={"param_a": "40", "param_b": "2"}, query=q),
        "multipart_query_and_params": lambda: _request(chstore, fields={"query": q, "param_a": "40", "param_b": "2"}),
        # settings ride in form fields too; ClickHouse enforces them (max_result_rows is 1 here)
        "multipart_settings": lambda: _request(chstore, fields={"query": "SELECT 42 FROM numbers(1)",
                                                                "max_result_rows": "1"}),
        # clickhouse-connect's async transport marks text parts with a content type
        "multipart_text_parts": lambda: _request(chstore, fields={
            "query": (None, q, "text/plain; charset=utf-8"), "param_a": (None, "40", "text/plain"),
            "param_b": (None, "2", "text/plain")}),
    }[form]()
    assert (status, body) == (200, b"42\n")


def test_form_settings_are_enforced(chstore: Any) -> None:
    status, body, headers = _request(chstore, fields={"query": "SELECT number FROM numbers(10)",
                                                      "max_result_rows": "3", "result_overflow_mode": "throw"})
    assert status != 200 and headers["X-ClickHouse-Exception-Code"] == "396", body


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "lz4"])
def test_compressed_query_bodies_and_responses(chstore: Any, encoding: str) -> None:
    enc = _encoders()[encoding]
    status, body, _ = _request(chstore, body=enc(b"SELECT {a:UInt32} + 2"), param_a="40",
                               headers={"Content-Encoding": encoding})
    assert (status, body) == (200, b"42\n")
    form, ctype = urllib3.encode_multipart_formdata({"query": "SELECT {a:UInt32} + 2", "param_a": "40"})
    status, body, _ = _request(chstore, body=enc(form), headers={"Content-Encoding": encoding, "Content-Type": ctype})
    assert (status, body) == (200, b"42\n")
    raw = _HTTP.request("POST", f"{chstore.url}/?enable_http_compression=1", body=b"SELECT 42",
                        headers={"Accept-Encoding": encoding}, decode_content=False)
    assert raw.status == 200 and raw.headers["Content-Encoding"] == encoding
    decode = {"gzip": lambda b: zlib.decompress(b, wbits=31), "deflate": zlib.decompress,
              "zstd": __import__("backports.zstd", fromlist=["zstd"]).decompress,
              "lz4": __import__("lz4.frame", fromlist=["frame"]).decompress}[encoding]
    assert decode(raw.data) == b"42\n"


def test_unsupported_forms_get_a_clear_error(chstore: Any) -> None:
    status, body, headers = _request(chstore, body=b"SELECT 1", decompress="1")
    assert headers["X-ClickHouse-Exception-Code"] == "48" and b"decompress=1" in body, body
    status, body, headers = _request(chstore, fields={"query": "SELECT * FROM t", "t": ("t.tsv", b"1\n")},
                                     t_structure="a UInt8")
    assert headers["X-ClickHouse-Exception-Code"] == "48" and b"External data" in body, body
    status, body, headers = _request(chstore, body=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "36", body


def _names(n: int) -> list[str]:
    return [f"model-{i:05d}-with-a-long-name" for i in range(n)]


@pytest.mark.parametrize("how", ["url", "form_over_4kb", "form_forced", "compressed"])
def test_clickhouse_connect_sends_parameters_every_way(chstore: Any, how: str) -> None:
    names = _names(2000 if how == "form_over_4kb" else 5)
    if how == "form_over_4kb":  # the case of issue 17: the client moves the parameters into a form
        assert len(urllib.parse.urlencode({"param_m": str(names)})) > MAX_URL_BIND_PARAM_LENGTH
    client = clickhouse_connect.get_client(host=chstore.host, port=chstore.port,
                                           form_encode_query_params=how == "form_forced",
                                           compress="zstd" if how == "compressed" else False)
    got = client.query("SELECT length({m:Array(String)}), {m:Array(String)}[-1], {s:String}",
                       parameters={"m": names, "s": "it's"}).result_rows
    assert got == [(len(names), names[-1], "it's")]
    assert client.command("SELECT {n:UInt32} * 2", parameters={"n": 21}) == 42


def test_clickhouse_connect_sees_form_errors_as_database_errors(chstore: Any) -> None:
    client = clickhouse_connect.get_client(host=chstore.host, port=chstore.port, form_encode_query_params=True)
    with pytest.raises(DatabaseError, match="UNKNOWN_IDENTIFIER|Code: 47"):
        client.query("SELECT no_such_column, {n:UInt8}", parameters={"n": 1})


@pytest.mark.parametrize("multipart", [False, True])
def test_a_body_sent_in_many_small_chunks_arrives_whole(chstore: Any, multipart: bool) -> None:
    # chunked transfer in 7-row pieces: every row stored once, in order, whether the body is the
    # data after the query or a multipart form (read piece by piece from the same stream)
    table = f"chunks_{int(multipart)}"
    assert _request(chstore, body=f"CREATE TABLE {table} (i UInt32, s String) ENGINE = Memory".encode())[0] == 200
    rows = [f"{i}\t{'x' * (i % 50)}\n".encode() for i in range(30_000)]
    query = f"INSERT INTO {table} FORMAT TabSeparated"
    data = b"".join(rows)
    if multipart:
        data, ctype = urllib3.encode_multipart_formdata({"query": query + "\n" + data.decode()})
        headers, params = {"Content-Type": ctype}, {}
    else:
        headers, params = {}, {"query": query}
    pieces = [data[i:i + 97] for i in range(0, len(data), 97)]
    r = _HTTP.request("POST", f"{chstore.url}/?{urllib.parse.urlencode(params)}", body=iter(pieces),
                      headers=headers, chunked=True)
    assert r.status == 200, r.data
    _, got, _ = _request(chstore, body=f"SELECT count(), sum(i), sum(length(s)), groupArray(i)[1] = 0 "
                                       f"FROM (SELECT * FROM {table} ORDER BY i) FORMAT TSV".encode())
    assert got == f"30000\t{sum(range(30_000))}\t{sum(i % 50 for i in range(30_000))}\t1\n".encode()
