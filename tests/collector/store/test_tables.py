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


# drift_metrics as stores created before the ``exceeded`` column have it (``drift`` was then the
# statistic's own crossing).
OLD_DRIFT_METRICS = f"""
CREATE TABLE {DATABASE}.drift_metrics
(
    model LowCardinality(String), model_version LowCardinality(String), detector LowCardinality(String),
    feature String, segment String, window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
    statistic LowCardinality(String), value Float64, p_value Nullable(Float64), threshold Nullable(Float64),
    drift Bool, reference_size UInt64, current_size UInt64, details String,
    computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at) PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, detector, feature, segment, statistic, window_start)
"""


def test_a_store_with_the_old_drift_metrics_gets_exceeded_and_its_rows_stay_readable(tmp_path):
    import datetime as dt

    from driftline.detectors.base import DetectorResult, result_to_row
    from driftline.detectors.sink import write_rows

    t0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    with start_chstore(tmp_path / "old-ch") as store:
        client = connect(store.url)
        client.command(f"CREATE DATABASE {DATABASE}")
        client.command(OLD_DRIFT_METRICS)
        client.command(f"INSERT INTO {DATABASE}.drift_metrics (model, model_version, detector, feature, segment, "
                       "window_start, window_end, statistic, value, p_value, threshold, drift, reference_size, "
                       "current_size, details) VALUES ('m', '1', 'data_drift', 'x', '', '2026-01-05 00:00:00', "
                       "'2026-01-05 01:00:00', 'jensen_shannon', 0.12, NULL, 0.1, true, 1000, 1000, '{}'), "
                       "('m', '1', 'data_drift', 'x', '', '2026-01-05 00:00:00', '2026-01-05 01:00:00', 'psi', "
                       "0.05, NULL, 0.2, false, 1000, 1000, '{}')")
        migrate(client)
        migrate(client)  # idempotent on a migrated store
        columns = [r[0] for r in client.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = 'drift_metrics' "
            "ORDER BY position", parameters={"d": DATABASE}).result_rows]
        assert columns[columns.index("details") + 1] == "exceeded"
        # Old rows: readable, and their old per-statistic flag is what ``exceeded`` now names.
        old = client.query(f"SELECT statistic, value, drift, exceeded FROM {DATABASE}.drift_metrics FINAL "
                           "ORDER BY statistic").result_rows
        assert old == [("jensen_shannon", 0.12, True, True), ("psi", 0.05, False, False)]
        # New rows go in next to them with the verdict and the crossing apart.
        verdict = DetectorResult("data_drift", "x", "jensen_shannon", 0.13, None, 0.1, False, 1000, 1000,
                                 exceeded=True)
        write_rows(client, [result_to_row(verdict, model="m", model_version="1", segment="",
                                          window_start=t0 + dt.timedelta(hours=1),
                                          window_end=t0 + dt.timedelta(hours=2))])
        new = client.query(f"SELECT drift, exceeded FROM {DATABASE}.drift_metrics FINAL "
                           "WHERE window_start >= '2026-01-05 01:00:00'").result_rows
        assert new == [(False, True)]
