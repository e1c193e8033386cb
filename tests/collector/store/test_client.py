"""The one ClickHouse client factory: URL choice, parsing, password unquoting, redaction."""

from __future__ import annotations

import pytest

from driftline.collector.store.client import DEFAULT_URL, parse_url, redact_url, resolve_url
from driftline.sdk.errors import ConfigError


def test_resolve_url_flag_then_environment_then_default() -> None:
    env = {"DRIFTLINE_CLICKHOUSE_URL": "http://env:8123"}
    assert resolve_url("http://flag:8123", env) == "http://flag:8123"
    assert resolve_url(None, env) == "http://env:8123"
    assert resolve_url(None, {}) == DEFAULT_URL == "http://127.0.0.1:8123"
    assert resolve_url("", {"DRIFTLINE_CLICKHOUSE_URL": ""}) == DEFAULT_URL


def test_parse_url_decodes_escaped_user_and_password() -> None:
    params = parse_url("https://ann%2Bops:p%40ss%3Aw%2Frd%25@db.example:9443")
    assert params == {"host": "db.example", "port": 9443, "username": "ann+ops", "password": "p@ss:w/rd%",
                      "secure": True}


def test_parse_url_defaults() -> None:
    assert parse_url("http://h") == {"host": "h", "port": 8123, "username": "default", "password": "",
                                     "secure": False}
    assert parse_url("https://h")["port"] == 8443


@pytest.mark.parametrize("url", ["127.0.0.1:8123", "tcp://h:9000", "http://"])
def test_parse_url_rejects_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ConfigError, match="DRIFTLINE_CLICKHOUSE_URL"):
        parse_url(url)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("http://ann:s3cret@h:8123") == "http://ann:***@h:8123"
    assert redact_url("http://h:8123") == "http://h:8123"
