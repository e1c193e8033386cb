"""dashboard/data.py: DashboardSettings.from_env (no ClickHouse needed)."""

from __future__ import annotations

import pytest

from driftline.dashboard.data import DashboardSettings
from driftline.sdk.errors import ConfigError


def test_from_env_reads_the_sql_limits_and_the_url() -> None:
    s = DashboardSettings.from_env({"DRIFTLINE_CLICKHOUSE_URL": "http://ch:8123",
                                    "DRIFTLINE_DASHBOARD_SQL_MAX_ROWS": "500",
                                    "DRIFTLINE_DASHBOARD_SQL_MAX_TIME_S": "7"})
    assert (s.clickhouse_url, s.sql_max_rows, s.sql_max_execution_time_s) == ("http://ch:8123", 500, 7)


def test_from_env_defaults() -> None:
    s = DashboardSettings.from_env({})
    assert (s.sql_max_rows, s.sql_max_execution_time_s) == (10_000, 30)


@pytest.mark.parametrize("name", ["DRIFTLINE_DASHBOARD_SQL_MAX_ROWS", "DRIFTLINE_DASHBOARD_SQL_MAX_TIME_S"])
@pytest.mark.parametrize("value", ["lots", "1.5", "-1"])
def test_a_bad_limit_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        DashboardSettings.from_env({name: value})


@pytest.mark.integration
def test_an_empty_result_still_names_its_columns(clickhouse_url: str) -> None:
    # Over HTTP an empty Native result carries no header; pages index columns of empty frames
    # (the Alerts page with no open incident), so run() names them.
    from driftline.dashboard.data import run

    empty = run(clickhouse_url, "SELECT 1 AS incident, 'm' AS model WHERE {n:UInt8} = 0", {"n": 1})
    assert (empty.columns, empty.rows) == (("incident", "model"), [])
    assert list(empty.df().columns) == ["incident", "model"]
    full = run(clickhouse_url, "SELECT 1 AS incident WHERE {n:UInt8} = 1", {"n": 1})
    assert (full.columns, full.rows) == (("incident",), [(1,)])
    # a query DESCRIBE cannot wrap (a trailing comment hides its closing parenthesis) keeps its
    # empty answer rather than failing
    odd = run(clickhouse_url, "SELECT 1 AS a WHERE {n:UInt8} = 0 -- the console allows comments", {"n": 1})
    assert (odd.columns, odd.rows) == ((), [])
