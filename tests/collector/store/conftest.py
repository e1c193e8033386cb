"""Fixtures of the store tests."""

from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture()
def own_store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a migrated store of the test's own (views are detached in it)."""
    from driftline.collector.embedded.chstore import start_chstore
    from driftline.collector.store.client import connect
    from driftline.collector.store.tables import migrate

    with start_chstore(tmp_path_factory.mktemp("own-ch")) as store:
        migrate(connect(str(store.url)))
        yield str(store.url)


@pytest.fixture()
def own_store(own_store_url: str) -> Any:
    """A client of :func:`own_store_url`'s store."""
    from driftline.collector.store.client import connect

    return connect(own_store_url)
