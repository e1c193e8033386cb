"""chDB connections of the embedded store: pools, per-request settings, read-only enforcement.

Findings (chDB 4.4 / ClickHouse 26.9, checked on this machine; the read-only ones are asserted
for every write kind in ``tests/collector/embedded/test_chstore.py``):

* One process may open several chDB connections on the same data directory
  (``chdb._chdb.connect(path)``); they share one engine, so every connection sees the others'
  tables and parts at once. A connection serialises its own queries (internal mutex) while two
  connections run in parallel (two 0.11 s scans took 0.12 s on two connections, 0.25 s on one).
  So the store keeps small pools and gives each request a connection of its own.
* ``path?mode=ro`` opens a connection with ``readonly=2`` as a *startup* setting. ClickHouse then
  refuses, with ``Code: 164 ... (READONLY)``: INSERT (VALUES and SELECT), CREATE, DROP, ALTER,
  DELETE, TRUNCATE, ``SET readonly = 0`` ("Cannot modify 'readonly' setting in readonly mode"),
  ``INSERT ... SETTINGS readonly = 0`` and the same statements hidden after ``;`` in a
  multi-statement request. Reads and ``SET`` of other settings work (readonly=2 semantics).
  The writer's connection is unaffected. **This is the mechanism used for read-only requests.**
* Query-level ``SETTINGS readonly = 1`` in the text refuses INSERT/CREATE/DROP here, but the text
  is the caller's, so it cannot be a guard. ``SET readonly = 1`` persists on the connection and
  would poison the writer. ``CREATE USER ... SETTINGS readonly = 1`` fails: chDB's ``default``
  user lacks the CREATE USER grant (ACCESS_DENIED), so there is no access control to lean on.
* chDB executes multi-statement text (``SELECT 1; SELECT 2``) where a real server refuses it;
  a ``SET``/``USE`` inside such text would outlive the request, so such requests are followed
  by a check of ``system.settings WHERE changed`` and ``currentDatabase()`` and the connection
  is restored to its baseline.
* chDB's streaming insert (``send_insert`` / ``insert_append`` / ``insert_done``) reports success
  for an insert that fails after its rows are parsed: a CHECK constraint that refuses them (nothing
  stored), a materialized view that throws (the source table's rows stored, the view's not).
  ``insert_done`` returns the rows as written and ``has_error()`` False; only ``system.errors``
  counts the failure. Parse errors do raise. So a body is inserted with ``INSERT ... FROM INFILE``
  from a file the HTTP front end spools it to: a query, which raises like a server (25k events of
  20 features: 60-90 ms against 40-75 ms streamed, file write included; the same body inline in
  the query text took 120-150 ms). Asserted in ``tests/collector/embedded/test_chstore.py``.
* Settings persist per connection. The store applies the request's settings with one ``SET``
  (ClickHouse validates names and values: unknown name -> 115 UNKNOWN_SETTING) and restores the
  connection's baseline afterwards, so ClickHouse itself enforces ``max_result_rows``,
  ``max_execution_time`` and the rest per request.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

from chdb import _chdb  # the low-level API exposes result statistics and streaming inserts

_ERROR_CODE_RE = re.compile(r"Code:\s*(\d+)\.")
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A comment or whitespace before the first keyword; used only to decide whether a request may
# have changed connection state (SET/USE), never to decide what is allowed.
_LEADING_NOISE_RE = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


# Internal to the store process, not in the error tree (sdk/errors.py): chstore_http turns every
# ChError into ClickHouse's own HTTP error response, which is all a client ever sees.
class ChError(Exception):
    """An error with a ClickHouse error code, reported to HTTP clients as ClickHouse does."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> ChError:
        text = str(exc)
        # chDB's Python layer may prefix its own words; keep the ClickHouse part.
        start = text.find("Code:")
        if start > 0:
            text = text[start:]
        m = _ERROR_CODE_RE.search(text)
        return cls(int(m.group(1)) if m else 1001, text)


@dataclass(frozen=True)
class Outcome:
    """What one statement produced: the body bytes and the statistics for X-ClickHouse-Summary."""

    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0


@dataclass
class SessionState:
    """Settings and current database a client kept with ``session_id`` (as a real server does)."""

    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used_s: float = 0.0
    timeout_s: float = 60.0


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def infile_statement(statement: str, path: str, fmt: str) -> str:
    """``INSERT INTO t [(cols)] [SETTINGS ...]`` as ``INSERT INTO t [(cols)] FROM INFILE 'path'
    COMPRESSION 'none' [SETTINGS ...] FORMAT fmt`` (the grammar puts the file before SETTINGS; no
    compression is guessed from the file's name)."""
    head, settings = split_settings(statement)
    return f"{head} FROM INFILE {quote_literal(path)} COMPRESSION 'none'{settings} FORMAT {fmt}"


def split_settings(statement: str) -> tuple[str, str]:
    """``statement`` cut before its top-level ``SETTINGS`` keyword (outside quotes, backticks and
    parentheses): (the part before, the clause with a leading space, or "")."""
    depth, quote, i = 0, "", 0
    while i < len(statement):
        c = statement[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif (depth == 0 and _SETTINGS_RE.match(statement, i) and i > 0 and not _WORD_RE.match(statement[i - 1])
              and not _TABLE_AHEAD_RE.search(statement[:i])):  # a table named `settings`
            return statement[:i].rstrip(), " " + statement[i:].strip()
        i += 1
    return statement.rstrip(), ""


_SETTINGS_RE = re.compile(r"SETTINGS\b", re.I)
_WORD_RE = re.compile(r"\w")
_TABLE_AHEAD_RE = re.compile(r"(?:\b(?:INTO|TABLE)\s+|\.\s*)$", re.I)


def first_keyword(sql: str) -> str:
    rest = sql[_LEADING_NOISE_RE.match(sql).end():]  # type: ignore[union-attr]
    m = re.match(r"[A-Za-z]+", rest)
    return m.group(0).upper() if m else ""


def _verbatim(value: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    return value


class EngineConnection:
    """One chDB connection plus the state the store has put on it (database, settings)."""

    def __init__(self, path: str, readonly: bool, engine_args: dict[str, str] | None = None) -> None:
        """``engine_args``: server settings for the engine, which the first connection to a path
        starts (later connections share it)."""
        self.path = path
        self.readonly = readonly
        self.broken = False  # set when the connection could not be restored; the pool replaces it
        args = {**(engine_args or {}), **({"mode": "ro"} if readonly else {})}
        # chDB reads the query string verbatim (a %2F stays %2F), as it does the path before it.
        self._conn = _chdb.connect(f"{path}?{urlencode(args, safe='/', quote_via=_verbatim)}" if args else path)
        self.baseline = self._changed_settings()
        self.known_settings = frozenset(self._query_text("SELECT name FROM system.settings").split())
        self.database = self._query_text("SELECT currentDatabase()").strip()
        self.default_database = self.database

    def _query_text(self, sql: str) -> str:
        return self._conn.query(sql, "TabSeparated", params={}).bytes().decode()

    def _changed_settings(self) -> dict[str, str]:
        out = {}
        text = self._query_text("SELECT name, value FROM system.settings WHERE changed")
        for line in text.splitlines():
            name, _, value = line.partition("\t")
            out[name] = value.encode().decode("unicode_escape") if "\\" in value else value
        return out

    def run(self, sql: str, fmt: str, params: dict[str, str]) -> Outcome:
        try:
            res = self._conn.query(sql, fmt, params=params)
        except RuntimeError as exc:
            self._flush()
            raise ChError.from_engine(exc) from None
        return Outcome(
            body=res.bytes(),
            read_rows=res.rows_read(),
            read_bytes=res.bytes_read(),
            written_rows=res.rows_written(),
            written_bytes=res.bytes_written(),
            elapsed_s=res.elapsed(),
        )

    def _flush(self) -> None:
        # chDB keeps the output of the statements of a multi-statement text that ran before the
        # failing one and prepends it to the *next* result on this connection; read it away so
        # the next request gets only its own rows.
        for _ in range(3):
            if self._conn.query("SELECT 1", "TabSeparated", params={}).bytes() == b"1\n":
                return

    def insert_file(self, statement: str, fmt: str, path: str) -> Outcome:
        """Insert the FORMAT-encoded body stored at ``path`` into ``statement`` (an INSERT without
        FORMAT) as ``INSERT ... FROM INFILE``: a query, so a failure raises (see the module's
        findings on chDB's streaming insert, which does not)."""
        return self.run(infile_statement(statement, path, fmt), "TabSeparated", {})

    def apply(self, database: str | None, settings: dict[str, str]) -> None:
        """Put the request's database and settings on the connection (ClickHouse validates them)."""
        target = database or self.default_database
        if target != self.database:
            self.run(f"USE `{target.replace('`', '``')}`", "TabSeparated", {})
            self.database = target
        if settings:
            for name in settings:
                if not _SETTING_NAME_RE.match(name):
                    raise ChError(115, f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
            assigns = ", ".join(f"{k} = {quote_literal(v)}" for k, v in settings.items())
            self.run(f"SET {assigns}", "TabSeparated", {})

    def capture(self) -> tuple[dict[str, str], str]:
        """Settings that differ from the baseline, and the current database (after SET/USE)."""
        changed = {k: v for k, v in self._changed_settings().items() if self.baseline.get(k) != v}
        self.database = self._query_text("SELECT currentDatabase()").strip()
        return changed, self.database

    def restore(self, names: set[str]) -> None:
        """Return the named settings to this connection's baseline."""
        # A name ClickHouse rejected (UNKNOWN_SETTING) was never applied, so it needs no reset.
        names = {n for n in names if n in self.known_settings}
        if not names:
            return
        assigns = ", ".join(
            f"{k} = {quote_literal(self.baseline[k])}" if k in self.baseline else f"{k} = DEFAULT"
            for k in sorted(names)
        )
        self.run(f"SET {assigns}", "TabSeparated", {})

    def close(self) -> None:
        self._conn.close()


class EnginePool:
    """Read-write and read-only chDB connections over one data directory.

    ``acquire(readonly)`` hands out a connection exclusively; ``close()`` waits for every
    connection to come back (in-flight statements finish) and closes them, releasing the
    directory for the next process.
    """

    def __init__(self, path: str, rw_size: int = 2, ro_size: int = 2,
                 server_settings: dict[str, str] | None = None) -> None:
        """``server_settings`` (e.g. cache sizes) go to the first connection, which starts the engine."""
        self._pools: dict[bool, queue.Queue[EngineConnection]] = {False: queue.Queue(), True: queue.Queue()}
        self._sizes = {False: rw_size, True: ro_size}
        self._closed = threading.Event()
        first = dict(server_settings or {})
        for readonly, size in self._sizes.items():
            for _ in range(size):
                self._pools[readonly].put(EngineConnection(path, readonly, first))
                first = {}
        probe = self._pools[False].get()
        try:
            row = probe.run("SELECT version(), timezone()", "TabSeparated", {}).body.decode().split("\t")
            self.version, self.timezone = row[0], row[1].strip()
        finally:
            self._pools[False].put(probe)

    @contextmanager
    def acquire(self, readonly: bool, timeout_s: float = 300.0) -> Iterator[EngineConnection]:
        if self._closed.is_set():
            raise ChError(242, "Code: 242. DB::Exception: Server is shutting down. (TABLE_IS_READ_ONLY)")
        try:
            conn = self._pools[readonly].get(timeout=timeout_s)
        except queue.Empty:
            raise ChError(202, "Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)") from None
        try:
            yield conn
        finally:
            if conn.broken:
                # e.g. a request ran `SET readonly = 1`: ClickHouse then refuses to reset it, which
                # is right, so the connection is replaced instead of reused.
                conn.close()
                conn = EngineConnection(conn.path, conn.readonly)
            self._pools[readonly].put(conn)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Wait for in-flight statements, then close every connection. True if all came back."""
        self._closed.set()
        complete = True
        for readonly, size in self._sizes.items():
            for _ in range(size):
                try:
                    conn = self._pools[readonly].get(timeout=timeout_s)
                except queue.Empty:
                    complete = False
                    break
                conn.close()
        return complete


def execute(conn: EngineConnection, sql: str, fmt: str, params: dict[str, str],
            database: str | None, settings: dict[str, str], session: SessionState | None,
            insert: tuple[str, str, str] | None = None) -> Outcome:
    """Run one request's statement on ``conn`` with its database/settings; restore the connection.

    ``insert`` = (statement without FORMAT, format, path of the body) inserts the body instead.
    """
    base = dict(session.settings) if session else {}
    base.update(settings)
    if conn.readonly:
        base.pop("readonly", None)  # fixed by the connection's mode; ClickHouse refuses changes
    db = database or (session.database if session else None)
    touched = set(base)
    # SET/USE (or anything hidden behind ';') may change connection state beyond this request.
    stateful = insert is None and (first_keyword(sql) in ("SET", "USE") or ";" in sql.strip().rstrip(";"))
    try:
        conn.apply(db, base)
        if insert is not None:
            return conn.insert_file(*insert)
        out = conn.run(sql, fmt, params)
        if stateful:
            changed, current_db = conn.capture()
            touched |= set(changed)
            if session is not None:
                session.settings.update(changed)
                session.database = current_db
        return out
    finally:
        try:
            if stateful:
                touched |= set(conn.capture()[0])
            conn.restore(touched)
        except ChError:
            conn.broken = True
