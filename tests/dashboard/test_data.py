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
