"""The one migrate: an empty store gets every table and view every component uses (real chDB)."""

from __future__ import annotations

import pytest

from driftline.collector.embedded.chstore import start_chstore
from driftline.collector.store import connect, migrate, rollups
from driftline.collector.store.tables import DATABASE
from driftline.sdk.contract import EVENT_KINDS

pytestmark = pytest.mark.integration

# What each component reads or writes; each must exist after one migrate on an empty store.
EXPECTED = {
    *(k.table for k in EVENT_KINDS), "labeled_predictions", "deletions",  # collector
    "drift_metrics", "detector_state", "references",  # detectors
    "alerts",  # alerting
    "rollup_labels_all", *rollups.TABLES, *rollups.VIEWS,  # dashboard
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with start_chstore(tmp_path_factory.mktemp("empty-ch")) as store:
        yield connect(store.url)


def _tables(client) -> set[str]:
    return {r[0] for r in client.query("SELECT name FROM system.tables WHERE database = {d:String}",
                                       parameters={"d": DATABASE}).result_rows}


def test_migrate_on_an_empty_store_creates_every_component_s_tables_and_is_idempotent(client):
    assert DATABASE not in {r[0] for r in client.query("SELECT name FROM system.databases").result_rows}
    migrate(client)
    created = _tables(client)
    assert EXPECTED <= created
    migrate(client)
    assert _tables(client) == created
    # the additive migration of detector_state (per-model records of the detector stage)
    columns = {r[0] for r in client.query(f"DESCRIBE TABLE {DATABASE}.detector_state").result_rows}
    assert {"model", "key", "blob", "saved_at", "meta"} <= columns
