"""A minimal ClickHouse HTTP endpoint over chDB, used until ``collector/chstore.py`` lands.

It serves just what clickhouse-connect needs (queries answered in the format the client asks for,
inserts as ``INSERT ... FORMAT Native`` bodies), on 127.0.0.1, port 0. One chDB session owns the
data directory; a lock serialises requests because a chDB session is not thread-safe.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from chdb import session as chs

_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)


class ChdbHttpServer:
    """Serve ClickHouse's HTTP interface over an in-process chDB session."""

    def __init__(self, path: str) -> None:
        self._session = chs.Session(path)
        self._lock = threading.Lock()
        self._tmp = tempfile.mkdtemp(prefix="chdb-http-")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                outer._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                else:
                    body = self.rfile.read(length)
                enc = self.headers.get("Content-Encoding", "")
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc == "lz4":
                    import lz4.frame

                    body = lz4.frame.decompress(body)
                outer._handle(self, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> "ChdbHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._session.close()

    def _handle(self, req: BaseHTTPRequestHandler, body: bytes) -> None:
        params = {k: v[0] for k, v in parse_qs(urlparse(req.path).query).items()}
        query = params.get("query")
        # clickhouse-connect sends an insert as one body: the statement line, then Native bytes.
        if not query and body[:6].upper() == b"INSERT":
            head, _, body = body.partition(b"\n")
            query = head.decode()
        try:
            if query and query.lstrip().upper().startswith("INSERT") and body:
                out = self._insert(query, body)
            else:
                sql = (query + " " if query else "") + body.decode()
                sql = sql.strip()
                fmt = params.get("default_format", "TabSeparated")
                m = _FORMAT_RE.search(sql)
                if m:
                    fmt = m.group(1)
                    sql = sql[: m.start()].rstrip()
                with self._lock:
                    res = self._session.query(sql, fmt)
                out = res.bytes() if hasattr(res, "bytes") else bytes(res)
            req.send_response(200)
            req.send_header("Content-Type", "application/octet-stream")
            req.send_header("Content-Length", str(len(out)))
            req.end_headers()
            req.wfile.write(out)
        except Exception as exc:  # report to the client as ClickHouse does
            msg = f"Code: 1. DB::Exception: {exc}".encode()
            req.send_response(500)
            req.send_header("X-ClickHouse-Exception-Code", "1")
            req.send_header("Content-Length", str(len(msg)))
            req.end_headers()
            req.wfile.write(msg)

    def _insert(self, query: str, body: bytes) -> bytes:
        m = _FORMAT_RE.search(query)
        fmt = m.group(1) if m else "Native"
        head = query[: m.start()] if m else query
        fd, path = tempfile.mkstemp(dir=self._tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        try:
            with self._lock:
                self._session.query(f"{head} SELECT * FROM file('{path}', {fmt})")
        finally:
            os.unlink(path)
        return b""


def _read_chunked(rfile) -> bytes:  # type: ignore[no-untyped-def]
    out = bytearray()
    while True:
        size = int(rfile.readline().strip().split(b";")[0], 16)
        if size == 0:
            rfile.readline()
            return bytes(out)
        out += rfile.read(size)
        rfile.readline()
