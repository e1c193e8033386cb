"""Detector output and state in ClickHouse (clickhouse-connect client, real or embedded store).

* :func:`write_rows` appends :class:`~driftline.detectors.base.MetricRow` s to
  ``driftline.drift_metrics``, :func:`write_estimates` performance estimates to
  ``driftline.performance_estimates``;
* :class:`StateRecord` s (:func:`save_records` / :func:`load_records`, :func:`latest_seqs`) keep
  per-model detector state in ``driftline.detector_state`` so detectors survive a collector
  restart;
* the tables' DDL lives with every other table's in ``collector/store/tables.py``, created by
  :func:`driftline.collector.store.migrate`.

The caller is :class:`driftline.detectors.state.ModelStates`: its ``publish`` writes the closed
windows' rows first and saves the changed models' state after, so a crash in between re-emits
the same windows (``drift_metrics`` keeps one row each under ``FINAL``) and loses nothing:

>>> class Client:  # stands in for a clickhouse-connect client
...     def insert(self, table, data, column_names, **kw): print(table, len(data), column_names[0])
>>> write_rows(Client(), [])
0
>>> save_records(Client(), [StateRecord("churn", "engine", b"...", {"seq": 1},
...                                     _dt.datetime(2026, 11, 24, tzinfo=_dt.timezone.utc))])
driftline.detector_state 1 model
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import json
from typing import Any, Iterable, Iterator, Mapping, Sequence

from driftline.detectors.base import MetricRow

__all__ = ["write_rows", "write_estimates", "StateRecord", "save_records", "load_records", "latest_seqs",
           "model_batches", "MODELS_PER_QUERY_CHARS"]


_WINDOW_COLUMNS = (MetricRow.COLUMNS.index("window_start"), MetricRow.COLUMNS.index("window_end"))


def write_rows(client: Any, rows: Iterable[MetricRow]) -> int:
    """Insert rows into ``driftline.drift_metrics``; returns how many.

    By column: a window of a 1,000-feature model is ~10,000 rows of two distinct window bounds,
    so each bound becomes the table's DateTime64(3) ticks once, not once per row (what
    clickhouse-connect does with datetimes: ~1 µs each)."""
    data = list(rows)
    if data:
        columns = list(zip(*data))
        for j in _WINDOW_COLUMNS:
            ticks = {d: _ms_ticks(d) for d in set(columns[j])}
            if None not in ticks.values():
                columns[j] = [ticks[d] for d in columns[j]]
        client.insert("driftline.drift_metrics", columns, column_names=list(MetricRow.COLUMNS),
                      column_oriented=True)
    return len(data)


def _ms_ticks(when: Any) -> int | None:
    """Milliseconds since the epoch of an aware datetime, truncated as clickhouse-connect does for
    a DateTime64(3) column, in integers (None for anything else: the client converts it)."""
    if type(when) is not _dt.datetime or when.tzinfo is None:
        return None
    return (when - _EPOCH) // _MS


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)


def write_estimates(client: Any, rows: Sequence[Any]) -> int:
    """Insert :class:`~driftline.detectors.estimate_stream.EstimateRow` s into
    ``driftline.performance_estimates`` (a later row of the same window and metric replaces an
    earlier one); returns how many."""
    from driftline.collector.store.tables import DATABASE, PERFORMANCE_ESTIMATES_TABLE

    if rows:
        client.insert(f"{DATABASE}.{PERFORMANCE_ESTIMATES_TABLE}", [r.as_tuple() for r in rows],
                      column_names=list(rows[0].COLUMNS))
    return len(rows)


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """One per-model state row: ``blob`` from ``DetectorEngine.state_for``, ``meta`` JSON-able."""

    model: str
    key: str
    blob: bytes
    meta: Mapping[str, Any]
    saved_at: _dt.datetime


#: ``meta`` key of a record whose blob is stored as its bytes. Records saved before it are base64
#: text: a third more bytes to send, compress and merge, for a column that takes any bytes.
_RAW = "blob"


def save_records(client: Any, records: Sequence[StateRecord]) -> None:
    """Insert the records in one insert (one block: all of them are stored, or none)."""
    if records:
        client.insert("driftline.detector_state",
                      [[r.model, r.key, r.blob, json.dumps({**r.meta, _RAW: "bytes"}, separators=(",", ":")),
                        r.saved_at] for r in records],
                      column_names=["model", "key", "blob", "meta", "saved_at"])


#: Characters of model names per state query. The queries that name models grow with the fleet;
#: bounded batches keep each request's bind parameters small (clickhouse-connect moves those over
#: ~4 KB urlencoded from the URL into a form body, and proxies refuse long URLs), whatever the
#: number of models a chunk brings.
MODELS_PER_QUERY_CHARS = 2_000


def model_batches(models: Sequence[str], max_chars: int = MODELS_PER_QUERY_CHARS) -> Iterator[list[str]]:
    """``models`` in order, in batches of at most ``max_chars`` characters of names (plus
    quoting); a single longer name is a batch of its own.

    >>> [len(b) for b in model_batches([f"m{i:03d}" for i in range(10)], max_chars=30)]
    [3, 3, 3, 1]
    """
    batch: list[str] = []
    size = 0
    for m in models:
        cost = len(m) + 4  # quotes and a comma, urlencoded
        if batch and size + cost > max_chars:
            yield batch
            batch, size = [], 0
        batch.append(m)
        size += cost
    if batch:
        yield batch


def load_records(client: Any, models: Sequence[str]) -> dict[str, list[StateRecord]]:
    """The newest record of every key of each model (per-model records only)."""
    out: dict[str, list[StateRecord]] = {}
    for batch in model_batches(models):
        rows = client.query(
            "SELECT model, key, argMax(blob, saved_at) AS blob, argMax(meta, saved_at), max(saved_at) "
            "FROM driftline.detector_state WHERE model IN {m:Array(String)} AND meta != '' GROUP BY model, key",
            parameters={"m": batch}, column_formats={"blob": "bytes"}).result_rows
        for model, key, blob, meta, saved_at in rows:
            doc = json.loads(meta)
            if doc.pop(_RAW, None) != "bytes":
                blob = base64.b64decode(blob)
            out.setdefault(model, []).append(StateRecord(model, key, blob, doc, saved_at))
    return out


def latest_seqs(client: Any, models: Sequence[str]) -> dict[str, int]:
    """The highest saved sequence number of each model that has per-model records."""
    out: dict[str, int] = {}
    for batch in model_batches(models):
        rows = client.query(
            "SELECT model, max(JSONExtractUInt(meta, 'seq')) FROM driftline.detector_state "
            "WHERE model IN {m:Array(String)} AND meta != '' GROUP BY model", parameters={"m": batch}).result_rows
        out.update({m: int(s) for m, s in rows})
    return out
