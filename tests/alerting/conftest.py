"""Fixtures for the alerting tests: a ClickHouse to query, fake channels, a rules file."""

from __future__ import annotations

import pytest

from driftline.alerting.receivers import LocalPagerDuty, LocalSlack, LocalWebhook


@pytest.fixture(scope="session")
def alert_ch_url(request: pytest.FixtureRequest) -> str:
    """URL of the embedded ClickHouse store (``collector/embedded/chstore.py``).

    The shared session fixture ``clickhouse_url`` (tests/conftest.py) is used when it exists;
    otherwise this module starts its own store process.
    """
    try:
        return str(request.getfixturevalue("clickhouse_url"))
    except pytest.FixtureLookupError:
        pass
    from driftline.collector.embedded.chstore import start_chstore

    store = start_chstore(request.getfixturevalue("tmp_path_factory").mktemp("alerting-ch"))
    request.addfinalizer(store.stop)
    return store.url


@pytest.fixture(scope="session")
def alert_ch(alert_ch_url: str):  # type: ignore[no-untyped-def]
    """A clickhouse-connect client with the tables migrated."""
    from driftline.collector.store import connect, migrate

    client = connect(alert_ch_url)
    migrate(client)
    return client


@pytest.fixture
def slack():  # type: ignore[no-untyped-def]
    s = LocalSlack()
    yield s
    s.close()


@pytest.fixture
def pd():  # type: ignore[no-untyped-def]
    s = LocalPagerDuty()
    yield s
    s.close()


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    s = LocalWebhook()
    yield s
    s.close()
