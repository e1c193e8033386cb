"""The dashboard's one door to ClickHouse: a read-only clickhouse-connect client and error states.

Settings are built once at the app's entry point (:func:`DashboardSettings.from_env`) and passed
down. Every query goes through :func:`run`, which turns any failure into :class:`DataError`
with a message a person can act on, so pages show ``st.error`` instead of a traceback.

Read-only is ClickHouse's own ``readonly`` setting, sent with every request. We send
``readonly=2`` rather than 1: a real ClickHouse server refuses to change *any* setting under
``readonly=1`` (so the per-query row and time limits would be rejected), while ``readonly=2``
still refuses every write and DDL statement and refuses changing ``readonly`` itself.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from driftline.collector.store.client import DEFAULT_URL, resolve_url
from driftline.sdk.errors import ConfigError, DataError

READONLY_LEVEL = 2


@dataclass(frozen=True)
class DashboardSettings:
    """Settings of one dashboard process."""

    clickhouse_url: str = DEFAULT_URL
    query_timeout_s: int = 30
    sql_max_rows: int = 10_000
    sql_max_execution_time_s: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DashboardSettings":
        """Build from ``DRIFTLINE_CLICKHOUSE_URL`` and ``DRIFTLINE_DASHBOARD_*`` (read at start)."""
        e = os.environ if env is None else env
        return cls(
            clickhouse_url=resolve_url(None, e),
            sql_max_rows=_env_int(e, "DRIFTLINE_DASHBOARD_SQL_MAX_ROWS", 10_000),
            sql_max_execution_time_s=_env_int(e, "DRIFTLINE_DASHBOARD_SQL_MAX_TIME_S", 30),
        )


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number (e.g. {name}={default})") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be >= 0 (e.g. {name}={default})")
    return value


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def client(url: str) -> Any:
    """A shared read-only client for ``url`` (clickhouse-connect clients are thread-safe
    when no session id is used, which ``connect`` guarantees)."""
    with _clients_lock:
        c = _clients.get(url)
        if c is None:
            from driftline.collector.store import connect

            try:
                c = connect(url, settings={"readonly": READONLY_LEVEL})
            except Exception as exc:
                raise DataError(
                    f"Cannot reach ClickHouse at {_redact(url)} ({type(exc).__name__}).",
                    code="UNREACHABLE",
                    hint="Is `driftline up` running? Otherwise set DRIFTLINE_CLICKHOUSE_URL or "
                         "pass --clickhouse-url to `driftline dashboard`.") from None
            _clients[url] = c
        return c


def _redact(url: str) -> str:
    # Never show a password from the URL on a page.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _error(exc: Exception, url: str) -> DataError:
    text = str(exc).strip()
    code = getattr(exc, "code", None)
    # Tolerated, not a bug to fix: the dashboard is read-only (readonly=2 refuses DDL), so it cannot
    # run the store's migrate itself, and it may start before any writer (collector, alerting,
    # `driftline up`) has migrated the store: docker-compose starts services together, and a
    # user's own server may be empty. A missing table is then a state to explain, not an error.
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text:
        return DataError("A table this panel reads does not exist yet.", code="UNKNOWN_TABLE",
                         hint="Start the collector (`driftline up`) so it creates the tables.")
    if any(s in text for s in ("Connection refused", "Max retries", "NewConnectionError",
                               "timed out", "RemoteDisconnected", "Failed to establish")):
        with _clients_lock:
            _clients.pop(url, None)
        return DataError(f"Cannot reach ClickHouse at {_redact(url)}.", code="UNREACHABLE",
                         hint="Is `driftline up` running? Otherwise set DRIFTLINE_CLICKHOUSE_URL.")
    # ClickHouse's own message ("Code: 164. DB::Exception: ... (READONLY)") is the useful part.
    if "DB::Exception" in text:
        text = "Code:" + text.split("Code:", 1)[-1] if "Code:" in text else text
        text = text.split(" (for url")[0]
    return DataError(text.splitlines()[0] if text else type(exc).__name__,
                     code=str(code or ""))


@dataclass(frozen=True)
class Result:
    """Columns and rows of one query plus how long ClickHouse took (seconds, wall)."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    elapsed_s: float

    def df(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(self.columns))


def run(url: str, sql: str, parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None) -> Result:
    """Run one read-only query; raise :class:`DataError` with a readable message on failure."""
    c = client(url)
    t0 = time.perf_counter()
    try:
        r = c.query(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
    except Exception as exc:
        raise _error(exc, url) from None
    columns = tuple(r.column_names)
    if not columns and not r.result_rows and _is_select(sql):
        # An empty result over HTTP carries no column names (ClickHouse's Native format sends no
        # block: ClickHouse/ClickHouse#55939, clickhouse-connect#257), so a page indexing a column
        # of an empty frame would fail. DESCRIBE gives the names without running the query.
        try:
            described = c.query(f"DESCRIBE TABLE ({sql})", parameters=dict(parameters or {}),
                                settings=dict(settings or {}))
            columns = tuple(row[0] for row in described.result_rows)
        except Exception:  # noqa: BLE001 - a query DESCRIBE cannot take (FORMAT, SETTINGS): no names
            columns = ()
    return Result(columns, [tuple(row) for row in r.result_rows], time.perf_counter() - t0)


def _is_select(sql: str) -> bool:
    """A query DESCRIBE can name the columns of (SELECT ... or WITH ... SELECT)."""
    head = sql.lstrip().lstrip("(").lstrip()[:4].upper()
    return head in ("SELE", "WITH")


def ping(url: str) -> str | None:
    """``None`` when ClickHouse answers, else the message to show."""
    try:
        run(url, "SELECT 1")
    except DataError as exc:
        return f"{exc.message} {exc.hint}".strip()
    return None


__all__ = ["DashboardSettings", "DataError", "Result", "client", "ping", "run"]
