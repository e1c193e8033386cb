"""Pre-aggregated rollups of the prediction log, kept current by materialized views.

The dashboard's panels read per-minute rollups instead of scanning millions of raw rows. Every
rollup but the feature rollup is filled by a materialized view (MV) as rows are inserted, so it stays correct as data
arrives, including ``INSERT … SELECT`` (the seeder) and inserts through the HTTP interface.

Tables (database ``driftline``; all names start with ``rollup_``):

* ``rollup_predictions_1m`` — per (model, minute, version, variant, predicted label): volume,
  errors, first/last timestamp, latency/confidence/value t-digest states, sums for means.
* ``rollup_predictions_1h`` — the same per hour, fed from the minute table (cascading MV).
* ``rollup_features_1h`` — per hour and feature: count, sum, min and max per equi-depth bin of the
  numeric values (at most ``FEATURE_BINS`` per model, version, feature and hour, and one per
  ``BIN_VALUES`` values, chosen at the roll), count per category (string and bool features; free
  text excluded). Shadow rows excluded. Histograms over a reference's edges and deciles are computed
  from every hour's bins. Its rows grow with models × features × hours, not with the values; an hour
  of a model with fewer than ``ROLL_MIN_VALUES`` feature values is not binned at all (the dashboard
  reads its raw rows). Not filled by a view: each
  closed hour is rolled from the raw rows (``feature_rolls.py``, with ``rollup_feature_rolls``
  recording each roll); the dashboard reads hours not rolled yet from the raw rows.
* ``rollup_labels_1m`` — the label join, pre-aggregated by the *prediction's* minute with signed
  counts: a label adds its prediction's contribution; a later label for the same prediction
  (a correction) subtracts the previous latest label's contribution and adds its own, so the sum
  is always "latest label per prediction", as the raw join computes it. A label that arrives
  before its prediction is added when the prediction arrives (the prediction-side MV looks it up).
* ``rollup_shadow_1m`` — primary/shadow pairs (shared ``request_id``) by the primary's minute;
  a pair is counted by the insert that completes it.
* ``rollup_prediction_index`` / ``rollup_pair_index`` — slim per-event lookup tables the join MVs
  read by primary key (served predictions by ``event_id``; primaries and shadows by role, hour and
  hashed request id, so that looking for shadows reads no primaries).
* ``rollup_arrivals_1h`` — labels and outcomes stored per (kind, hour). Its views, with
  ``rollup_predictions_1m``'s, write a row for every insert into their table, so an insert that
  ran none of its table's views is seen in the insert's summary (the writer inserts it again).
* ``rollup_early`` / ``rollup_pair_block`` — Null tables (nothing stored) that pass a block's few
  relevant rows from a slim MV to the costly join MVs, so those run only when there is work.

Each MV costs milliseconds per insert to analyse and plan whatever the block size (~55 ms for all
of them on this machine), so the insert cost per row falls with bigger inserts; every subquery in
an MV's query adds to that.

This module creates, rebuilds and drops them (:func:`ensure`, :func:`rebuild`, :func:`drop`); their
SQL, which the dashboard also runs over raw rows for the partial minutes at a range's edges, is in
``rollup_sql.py``.

Known limits (the raw tables stay the reference): a label and its prediction inserted
*concurrently* (neither visible to the other's MV) are missed or counted twice; rows removed
later (deletions, TTL) stay in the aggregates until :func:`rebuild`; a replayed prediction that
reaches the table twice is counted twice (as raw queries do before a merge). chDB 26.9 once stored
an insert's rows and ran none of its views, with no error; the writer checks every insert's
summary for that (``writer.py``) and inserts such rows again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from driftline.collector.store.feature_rolls import roll_closed
from driftline.collector.store.rollup_sql import (
    BACKFILL,
    DB,
    FEATURES_SELECT,
    FEATURE_ROLLS,
    FEATURE_ROLLUP,
    LABELS_ALL_VIEW,
    PER_EVENT_TABLES,
    REBUILT_ON_CHANGE,
    RETIRED_TABLES,
    RETIRED_VIEWS,
    TABLES,
    VIEWS,
)

FEATURES, ROLLS = FEATURE_ROLLUP, FEATURE_ROLLS


def _existing(client: Any) -> set[str]:
    rows = client.query(f"SELECT name FROM system.tables WHERE database = '{DB}'").result_rows
    return {r[0] for r in rows}


def ensure(client: Any) -> tuple[str, ...]:
    """Create missing rollup tables and their MVs; backfill the tables created now.

    Idempotent. The last step of :func:`driftline.collector.store.migrate` (after the tables it
    reads), which runs before writers start (rows inserted between an MV's creation and its
    table's backfill would be counted twice).
    Returns the names of the tables created (and backfilled) by this call.
    """
    # An MV whose definition changed (its comment holds a hash of it) is replaced; its table stays.
    comments = dict(client.query(f"SELECT name, comment FROM system.tables WHERE database = '{DB}' "
                                 f"AND engine = 'MaterializedView'").result_rows)
    # A table of REBUILT_ON_CHANGE whose definition changed (its comment holds a hash of its DDL
    # and backfill; a table of an earlier release has none) is dropped with its views, then
    # created and backfilled from the raw rows below: its old rows would not mean the same.
    tables = dict(client.query(f"SELECT name, comment FROM system.tables WHERE database = '{DB}' "
                               f"AND engine != 'MaterializedView'").result_rows)
    outdated = {t for t in REBUILT_ON_CHANGE if t in tables and tables[t] != _table_digest(t)}
    for mv, (target, select) in VIEWS.items():
        if mv in comments and (comments[mv] != _digest(target, select) or target in outdated):
            client.command(f"DROP VIEW {DB}.{mv}")
    for name in outdated:
        client.command(f"DROP TABLE {DB}.{name}")
    for mv in RETIRED_VIEWS:
        client.command(f"DROP VIEW IF EXISTS {DB}.{mv}")
    for name in RETIRED_TABLES:
        client.command(f"DROP TABLE IF EXISTS {DB}.{name}")
    have = _existing(client)
    client.command(LABELS_ALL_VIEW)
    created = tuple(t for t in TABLES if t not in have)
    for name, ddl in TABLES.items():
        comment = f" COMMENT '{_table_digest(name)}'" if name in REBUILT_ON_CHANGE else ""
        client.command(f"CREATE TABLE IF NOT EXISTS {DB}.{name} {ddl}{comment}")
    for mv, (target, select) in VIEWS.items():
        client.command(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DB}.{mv} TO {DB}.{target} AS {select} "
                       f"COMMENT '{_digest(target, select)}'")
    for name in created:
        if name in BACKFILL:
            _backfill(client, name)
    if FEATURES in created or ROLLS in created:  # rolls and rows (of older tables, if any) start again
        for name in (FEATURES, ROLLS):
            client.command(f"TRUNCATE TABLE {DB}.{name}")
        roll_closed(client)
    return created


def _digest(target: str, select: str) -> str:
    return "def " + hashlib.sha256(f"{target}\n{select}".encode()).hexdigest()[:16]


def _table_digest(name: str) -> str:
    return _digest(TABLES[name], FEATURES_SELECT if name == FEATURES else BACKFILL.get(name, ""))


def _backfill(client: Any, name: str) -> None:
    client.command(f"INSERT INTO {DB}.{name} {BACKFILL[name]}", settings={"max_insert_threads": 2})


def rebuild(client: Any) -> None:
    """Recompute every rollup from the raw tables (after deletions, TTL or an interrupted backfill).

    Writers should be paused: rows inserted while a table is rebuilt may be counted twice.
    """
    ensure(client)
    for name in BACKFILL:
        client.command(f"TRUNCATE TABLE {DB}.{name}")
        _backfill(client, name)
    for name in (FEATURES, ROLLS):  # rolls: collectors may roll meanwhile, each roll whole
        client.command(f"TRUNCATE TABLE {DB}.{name}")
    roll_closed(client)


def drop(client: Any) -> None:
    """Remove every rollup table and MV (the raw tables are untouched)."""
    for mv in VIEWS:
        client.command(f"DROP VIEW IF EXISTS {DB}.{mv}")
    for mv in RETIRED_VIEWS:
        client.command(f"DROP VIEW IF EXISTS {DB}.{mv}")
    for name in (*TABLES, *RETIRED_TABLES):
        client.command(f"DROP TABLE IF EXISTS {DB}.{name}")
    client.command(f"DROP VIEW IF EXISTS {DB}.rollup_labels_all")


__all__ = ["BACKFILL", "PER_EVENT_TABLES", "TABLES", "VIEWS", "drop", "ensure", "rebuild"]
