"""``driftline reference`` (detectors/cli.py; not test_cli.py: tests/alerting has that basename and
neither folder is a package): where it finds ClickHouse (a real chDB store with a password)."""

from __future__ import annotations

import argparse
import io
from urllib.parse import quote

import pytest

from driftline.collector.chstore import start_chstore
from driftline.detectors import cli

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
