"""ClickHouse's HTTP interface over an :class:`~driftline.collector.embedded.chstore_engine.EnginePool`.

Implements what clickhouse-connect, curl and Grafana's ClickHouse plugin rely on: ``/ping``,
``GET``/``POST`` with the query in ``?query=`` and/or the body, settings and ``param_*`` query
parameters in the URL or in the fields of a ``multipart/form-data`` body (clickhouse-connect
sends bind parameters over ~4 KB that way; ``chstore_forms.py``), ``X-ClickHouse-*`` request
headers, HTTP Basic auth, ``Content-Encoding`` of request bodies (lz4 frames, zstd, gzip,
deflate) and response compression when ``enable_http_compression=1``, ``session_id`` settings, ClickHouse-style errors
(``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body) and streaming
``INSERT ... FORMAT <fmt>`` bodies (clickhouse-connect's Native inserts, curl's CSV/TSV/JSONEachRow).

A ``GET`` request is read-only, as on a real server; so is ``readonly=1|2`` and the read-only user.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from driftline.collector.embedded.chstore_engine import ChError, EnginePool, Outcome, SessionState, execute
from driftline.collector.embedded.chstore_forms import is_form, parse_form

# URL parameters that belong to the HTTP interface, not to ClickHouse settings.
HTTP_ONLY_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "session_id",
    "session_timeout", "session_check", "query_id", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "readonly", "role", "enable_http_compression",
    "http_zlib_compression_level", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
    "http_native_compression_disable_checksumming_on_decompress", "add_http_cors_header",
})
_INSERT_FORMAT_RE = re.compile(
    rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+([A-Za-z0-9_]+)[ \t]*(?:\r?\n)?", re.I | re.S)
_TRAILING_FORMAT_RE = re.compile(r"\sFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
_HEAD_BYTES = 1 << 16
_HTTP_STATUS = {  # ClickHouse's HTTPHandler mapping, for the codes an embedded store can raise
    516: 401, 194: 401, 192: 401, 164: 403, 497: 403, 60: 404, 81: 404, 46: 404, 36: 400, 62: 400,
    27: 400, 115: 400, 47: 400, 26: 400, 73: 400, 53: 400, 6: 400, 202: 503, 242: 503, 373: 400,
}


@dataclass(frozen=True)
class HttpSettings:
    """Limits and users of the HTTP front end."""

    readonly_user: str = "readonly"
    readonly_password: str | None = None
    default_password: str | None = None
    max_query_bytes: int = 16 << 20
    server_name: str = "driftline-chstore"


class _Decoder:
    """Incremental decoder of concatenated compressed frames of one Content-Encoding."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._d = self._new()

    def _new(self):  # noqa: ANN202 - one of several decompressor types
        if self.encoding == "lz4":
            import lz4.frame
            return lz4.frame.LZ4FrameDecompressor()
        if self.encoding == "zstd":
            from backports import zstd
            return zstd.ZstdDecompressor()
        if self.encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(wbits=31)
        if self.encoding == "deflate":
            return zlib.decompressobj()
        if self.encoding == "br":
            import brotli  # optional, as in ClickHouse builds without brotli
            return brotli.Decompressor()
        raise ChError(36, f"Code: 36. DB::Exception: Unknown Content-Encoding '{self.encoding}'. (BAD_ARGUMENTS)")

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            if self.encoding == "br":
                return self._d.process(data)
            out.append(self._d.decompress(data))
            if getattr(self._d, "eof", False):
                data = self._d.unused_data
                self._d = self._new()  # several frames/members follow each other
            else:
                data = b""
        return b"".join(out)


def compress_body(body: bytes, accept: str) -> tuple[bytes, str | None]:
    for enc in (e.split(";")[0].strip().lower() for e in accept.split(",")):
        if enc == "lz4":
            import lz4.frame
            return lz4.frame.compress(body), "lz4"
        if enc == "zstd":
            from backports import zstd
            return zstd.compress(body), "zstd"
        if enc in ("gzip", "x-gzip"):
            c = zlib.compressobj(wbits=31)
            return c.compress(body) + c.flush(), "gzip"
        if enc == "deflate":
            return zlib.compress(body), "deflate"
    return body, None


class _Body:
    """File-like view of the decoded request body (chunked or sized, possibly compressed)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        # a bytearray appends in place and drops a prefix without copying the rest: reading a body
        # of many chunks stays linear in its size (bytes' += and slicing copied it all each time)
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        buf = self._buf
        while n < 0 or len(buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            buf += chunk
        if n < 0 or n >= len(buf):
            out = bytes(buf)
            buf.clear()
        else:
            out = bytes(buf[:n])
            del buf[:n]
        return out


class ChHttpServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up shutdown
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], pool: EnginePool, settings: HttpSettings) -> None:
        super().__init__(address, ChHandler)
        self.pool = pool
        self.settings = settings
        self.sessions: dict[str, SessionState] = {}
        self.sessions_lock = threading.Lock()

    def session(self, session_id: str | None, timeout_s: float = 60.0) -> SessionState | None:
        """The session's state; sessions idle longer than their ``session_timeout`` are dropped."""
        if not session_id:
            return None
        now = time.monotonic()
        with self.sessions_lock:
            # clickhouse-connect gives every client a session id, so expiry keeps this bounded.
            for sid in [k for k, v in self.sessions.items() if now - v.last_used_s > v.timeout_s]:
                del self.sessions[sid]
            state = self.sessions.setdefault(session_id, SessionState())
            state.last_used_s, state.timeout_s = now, timeout_s
            return state


class ChHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChHttpServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per request would flood the collector's logs

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle(readonly_method=True)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(readonly_method=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(200, b"", {}, head=True)

    # --- plumbing ------------------------------------------------------------------------
    def _raw_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def _decoded_chunks(self) -> Iterator[bytes]:
        enc = self.headers.get("Content-Encoding", "").strip().lower()
        if not enc or enc == "identity":
            yield from self._raw_chunks()
            return
        dec = _Decoder(enc)
        for chunk in self._raw_chunks():
            if out := dec.feed(chunk):
                yield out

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to small answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_error(self, err: ChError, query_id: str) -> None:
        body = err.message if err.message.startswith("Code:") else f"Code: {err.code}. DB::Exception: {err.message}"
        self._send(_HTTP_STATUS.get(err.code, 500), (body.rstrip("\n") + "\n").encode(), {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(err.code),
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": self.server.settings.server_name,
        })

    def _auth(self, params: dict[str, str]) -> bool:
        """Return True if the caller is the read-only user; raise 516 if credentials are wrong."""
        user, password = params.get("user"), params.get("password")
        user = self.headers.get("X-ClickHouse-User", user)
        password = self.headers.get("X-ClickHouse-Key", password)
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                user, password = "", None
        user = user or "default"
        s = self.server.settings
        loopback = ipaddress.ip_address(self.client_address[0]).is_loopback

        def ok(expected: str | None) -> bool:
            if expected is None:  # no password configured: loopback clients only
                return loopback
            return hmac.compare_digest((password or "").encode(), expected.encode())

        if user == "default" and ok(s.default_password):
            return False
        if user == s.readonly_user and ok(s.readonly_password):
            return True
        raise ChError(516, f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                      "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    # --- one request -------------------------------------------------------------------------
    def _handle(self, readonly_method: bool) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and "query" not in params
                                                         and readonly_method):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        body = _Body(self._decoded_chunks())
        try:
            self._execute(params, query_id, body, readonly_method)
        except ChError as err:
            body.read()  # drain so the keep-alive connection stays in sync
            self._send_error(err, query_id)
        except Exception as exc:  # noqa: BLE001 - any bug becomes a ClickHouse-shaped 500
            body.read()
            self._send_error(ChError(1001, f"Code: 1001. DB::Exception: {type(exc).__name__}: {exc}. (STD_EXCEPTION)"), query_id)

    def _read_form(self, params: dict[str, str], body: _Body, readonly_method: bool) -> _Body:
        """Merge the fields of a multipart body into ``params`` (as a real server reads the query,
        ``param_*`` and settings from them); the body is then empty."""
        if readonly_method or not is_form(self.headers.get("Content-Type", "")):
            return body
        limit = self.server.settings.max_query_bytes
        raw = body.read(limit + 1)
        if len(raw) > limit:
            body.read()
            raise ChError(62, f"Code: 62. DB::Exception: Form body is too large (max {limit} bytes). (SYNTAX_ERROR)")
        params.update(parse_form(self.headers["Content-Type"], raw))
        return _Body(iter(()))

    def _execute(self, params: dict[str, str], query_id: str, body: _Body, readonly_method: bool) -> None:
        body = self._read_form(params, body, readonly_method)
        for name in ("compress", "decompress"):
            if params.get(name, "0") not in ("", "0"):
                # ClickHouse's own block framing needs CityHash128; no client of ours sends it.
                raise ChError(48, f"Code: 48. DB::Exception: {name}=1 (ClickHouse's native block compression) "
                              "is not supported by the embedded store; use Content-Encoding / "
                              "enable_http_compression=1. (NOT_IMPLEMENTED)")
        readonly = self._auth(params) or readonly_method or params.get("readonly", "0") not in ("", "0")
        database = self.headers.get("X-ClickHouse-Database") or params.get("database") or None
        fmt = self.headers.get("X-ClickHouse-Format") or params.get("default_format") or "TabSeparated"
        settings = {k: v for k, v in params.items() if k not in HTTP_ONLY_PARAMS and not k.startswith("param_")}
        qparams = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        try:
            session_timeout_s = float(params.get("session_timeout") or 60)
        except ValueError:
            raise ChError(36, "Code: 36. DB::Exception: Invalid session timeout. (BAD_ARGUMENTS)") from None
        session = self.server.session(params.get("session_id"), session_timeout_s)
        if session is not None and session.settings.get("readonly", "0") != "0":
            readonly = True  # the session ran `SET readonly = 1|2`
        url_query = params.get("query", "")

        insert = None
        head = body.read(_HEAD_BYTES)
        m = _INSERT_FORMAT_RE.match(url_query.encode()) if url_query else None
        if m and m.end() >= len(url_query.encode().rstrip()):
            insert = (m.group(1).decode(), m.group(2).decode(), head)
        elif not url_query:
            m = _INSERT_FORMAT_RE.match(head)
            if m:
                insert = (m.group(1).decode(), m.group(2).decode(), head[m.end():])
        if insert is not None:
            statement, in_fmt, first = insert
            # The body goes to a file the engine reads with INSERT ... FROM INFILE (chstore_engine.py:
            # chDB's streaming insert reports success for inserts that failed); removed below.
            with tempfile.NamedTemporaryFile(prefix="driftline-insert-", suffix=".body", delete=False) as spool:
                try:
                    spool.write(first)
                    while chunk := body.read(1 << 20):
                        spool.write(chunk)
                except BaseException:
                    os.unlink(spool.name)
                    raise
            sql, run_insert = statement, (statement, in_fmt, spool.name)
        else:
            rest = body.read(self.server.settings.max_query_bytes + 1 - len(head))
            text = head + rest
            if len(text) > self.server.settings.max_query_bytes:
                body.read()
                raise ChError(62, f"Code: 62. DB::Exception: Query is too large ({len(text)} bytes "
                              f"read, max {self.server.settings.max_query_bytes}). (SYNTAX_ERROR)")
            sql = (url_query + ("\n" if url_query and text else "") + text.decode("utf-8", "replace"))
            run_insert = None
            if not sql.strip():
                raise ChError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        started = time.perf_counter()
        lock = session.lock if session else None
        if lock is not None and not lock.acquire(blocking=False):
            if run_insert is not None:
                os.unlink(run_insert[2])
            raise ChError(373, f"Code: 373. DB::Exception: Session {params.get('session_id')} is locked "
                          "by a concurrent client. (SESSION_IS_LOCKED)")
        try:
            with self.server.pool.acquire(readonly) as conn:
                out = execute(conn, sql, fmt, qparams, database, settings, session, run_insert)
        finally:
            if lock is not None:
                lock.release()
            if run_insert is not None:
                os.unlink(run_insert[2])
        self._respond(out, params, query_id, fmt if run_insert is None else None, sql, started)

    def _respond(self, out: Outcome, params: dict[str, str], query_id: str, fmt: str | None,
                 sql: str, started: float) -> None:
        result_fmt = None
        if fmt is not None:
            m = _TRAILING_FORMAT_RE.search(sql)
            result_fmt = m.group(1) if m else fmt
        summary = {
            "read_rows": str(out.read_rows), "read_bytes": str(out.read_bytes),
            "written_rows": str(out.written_rows), "written_bytes": str(out.written_bytes),
            "total_rows_to_read": str(out.read_rows), "result_rows": "0", "result_bytes": str(len(out.body)),
            "elapsed_ns": str(int((time.perf_counter() - started) * 1e9)),
        }
        headers = {
            "Content-Type": "text/plain; charset=UTF-8" if result_fmt in (None, "TabSeparated", "TSV") else
            "application/octet-stream",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
            "X-ClickHouse-Server-Display-Name": self.server.settings.server_name,
            "X-ClickHouse-Timezone": self.server.pool.timezone,
            "Keep-Alive": "timeout=10",
        }
        if result_fmt:
            headers["X-ClickHouse-Format"] = result_fmt
        body = out.body
        if params.get("enable_http_compression", "0") not in ("", "0") and body:
            body, enc = compress_body(body, self.headers.get("Accept-Encoding", ""))
            if enc:
                headers["Content-Encoding"] = enc
        self._send(200, body, headers)
