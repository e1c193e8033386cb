"""driftline.collector.store: the store's one home.

Everything about driftline's ClickHouse lives here, whoever reads or writes it:

* ``client.py`` — the one client factory (:func:`connect`: URL parsing, password unquoting,
  read-only clients, redaction for logs) and the one :data:`DEFAULT_URL` (:func:`resolve_url`);
* ``tables.py`` — every table's and view's DDL and the one :func:`migrate` that creates them,
  in dependency order, for every component (prediction log, detectors, references, alerts,
  deletion audit), ending with ``rollups.py``, the dashboard's materialized views (their SQL in
  ``rollup_sql.py``);
* ``writer.py`` — the collector's batched, deduplicating insert of the prediction log;
* ``rollup_check.py`` / ``rollups_cli.py`` / ``rollup_audit.py`` — the rollups counted against the raw
  rows: ``driftline rollups check``, and the collector's periodic audit of the last hours;
* ``deletion.py`` / ``deletion_cli.py`` — deletion on request (``driftline delete``);
* ``hashing.py`` — the keyed hash of ``hash``-policy values as stored, and its key;
* ``sql_cli.py`` — ``driftline sql``, read-only queries.

>>> from driftline.collector.store import DEFAULT_URL
>>> DEFAULT_URL
'http://127.0.0.1:8123'
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_URL": "driftline.collector.store.client",
    "connect": "driftline.collector.store.client",
    "parse_url": "driftline.collector.store.client",
    "redact_url": "driftline.collector.store.client",
    "resolve_url": "driftline.collector.store.client",
    "DATABASE": "driftline.collector.store.tables",
    "migrate": "driftline.collector.store.tables",
    "ClickHouseWriter": "driftline.collector.store.writer",
    "delete_rows": "driftline.collector.store.deletion",
    "DeletionReport": "driftline.collector.store.deletion",
    "DeletionError": "driftline.collector.store.deletion",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
