"""A panel's query: what it is, how it runs, and the clauses every panel's SQL shares.

:class:`Query` is one panel's name, SQL and parameters; :func:`fetch` runs it through the
read-only client and caches the result briefly (``st.cache_data``), so reruns triggered by a
widget do not hit ClickHouse again. :func:`slice_where` and :func:`metrics_where` turn a
:class:`~driftline.dashboard.view.View` (model, version, segment, time range) into a WHERE
clause; :func:`panel` picks a panel's rollup SQL when the rollups can answer, else its raw SQL.
The panels themselves are in ``queries.py`` (prediction log: raw tables) and ``rollup_queries.py``
(rollups), and ``detector_queries.py`` (what the detectors wrote).

Time ranges are passed as strings and converted in SQL (``toDateTime64(…, 6, 'UTC')``), which
behaves identically on the embedded store and on a ClickHouse server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from driftline.dashboard import rollup_queries as rq
from driftline.dashboard.data import Result, run
from driftline.dashboard.view import View, ch_time
from driftline.sdk.contract import PREDICTION

__all__ = ["CACHE_TTL_S", "CONF", "IN_RANGE", "NOT_SHADOW", "P", "T", "Query", "either", "fetch", "in_range",
           "metrics_where", "panel", "query", "served_where", "slice_where"]

CACHE_TTL_S = 10
P = f"driftline.{PREDICTION.table}"
NOT_SHADOW = "variant NOT LIKE 'shadow%'"
CONF = "arrayMax(mapValues(prediction_scores))"
T = "toStartOfInterval(timestamp, toIntervalSecond({bucket:UInt32}))"


@dataclass(frozen=True)
class Query:
    """One panel's query: ``name`` labels it in the benchmark and in error messages."""

    name: str
    sql: str
    params: tuple[tuple[str, Any], ...] = ()


def fetch(url: str, q: Query) -> Result:
    """Run ``q`` read-only, cached for :data:`CACHE_TTL_S` seconds per (url, sql, params)."""
    return _cached(url, q.sql, q.params)


def _run(url: str, sql: str, params: tuple[tuple[str, Any], ...]) -> Result:
    return run(url, sql, dict(params))


try:  # streamlit is a server extra; the module stays importable (bench, tests) without it
    import streamlit as st

    _cached = st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=512)(_run)
except ModuleNotFoundError:  # pragma: no cover
    _cached = _run


IN_RANGE = ("timestamp >= toDateTime64({start:String}, 6, 'UTC') "
             "AND timestamp < toDateTime64({end:String}, 6, 'UTC')")


def in_range(start: Any, end: Any) -> dict[str, Any]:
    """The ``start`` / ``end`` parameters of :data:`IN_RANGE`."""
    return {"start": ch_time(start), "end": ch_time(end)}


def slice_where(v: View, *, shadow: bool = True, ts: str = "timestamp") -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters of ``v``'s slice of the prediction log (shadows too unless
    ``shadow=False``)."""
    parts = ["model = {model:String}",
             f"{ts} >= toDateTime64({{start:String}}, 6, 'UTC')",
             f"{ts} < toDateTime64({{end:String}}, 6, 'UTC')"]
    params: dict[str, Any] = {"model": v.model, **in_range(v.start, v.end), "bucket": v.bucket_s}
    if v.version:
        parts.append("model_version = {version:String}")
        params["version"] = v.version
    if v.segment_pair:
        parts.append("tags[{seg_key:String}] = {seg_value:String}")
        params["seg_key"], params["seg_value"] = v.segment_pair
    if not shadow:
        parts.append(NOT_SHADOW)
    return " AND ".join(parts), params


def query(name: str, sql: str, params: dict[str, Any]) -> Query:
    """A :class:`Query` with its parameters in a stable (hashable, cacheable) order."""
    return Query(name, sql.strip(), tuple(sorted(params.items())))


def either(name: str, s: dict[str, Any] | None, rollup: Callable[[dict[str, Any]], str],
            raw: Callable[[], tuple[str, dict[str, Any]]], **extra: Any) -> Query:
    """The panel's rollup SQL when ``s`` (a rollup split of the range) is given, else its raw SQL."""
    if s is not None:
        return query(name, rollup(s), {**s, **extra})
    sql, p = raw()
    return query(name, sql, {**p, **extra})


def panel(name: str, v: View, raw: bool, rollup: Callable[[dict[str, Any]], str],
           raw_sql: Callable[[str], str], source: Callable[[View], tuple[str, dict[str, Any]]] | None = None,
           split: Callable[[View], dict[str, Any] | None] = rq.view_split, **extra: Any) -> Query:
    """A model-page panel: ``rollup(split(v))`` over the rollups, or ``raw_sql(x)`` where ``x`` is
    what ``source(v)`` returns (default: the slice's WHERE clause) when the rollups cannot answer."""
    def slow() -> tuple[str, dict[str, Any]]:
        x, p = (source or slice_where)(v)
        return raw_sql(x), p
    return either(name, None if raw else split(v), rollup, slow, **extra)


def served_where(v: View) -> tuple[str, dict[str, Any]]:
    """:func:`slice_where` without shadows: the predictions that were served."""
    return slice_where(v, shadow=False)


def metrics_where(v: View) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and parameters of ``v``'s slice of ``drift_metrics`` (by window start)."""
    parts = ["model = {model:String}", "segment = {segment:String}",
             "window_start >= toDateTime64({start:String}, 3, 'UTC')",
             "window_start < toDateTime64({end:String}, 3, 'UTC')"]
    params: dict[str, Any] = {"model": v.model, "segment": v.segment, **in_range(v.start, v.end)}
    if v.version:
        parts.append("model_version = {version:String}")
        params["version"] = v.version
    return " AND ".join(parts), params
