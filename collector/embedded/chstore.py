"""The embedded ClickHouse store: one process owns a chDB data directory and serves ClickHouse's
HTTP interface on loopback, so every component talks to it exactly as to a real server.

A chDB data directory can be opened by one process only, hence one server process; everything
else (collector, alerting, dashboard, ``driftline sql``, clickhouse-connect, curl, Grafana) is an
HTTP client. Run it::

    python -m driftline.collector.embedded.chstore --data-dir ./data/ch --port 8123

or from Python::

    >>> from driftline.collector.embedded.chstore import start_chstore
    >>> with start_chstore("/tmp/ch") as store:                       # doctest: +SKIP
    ...     client = clickhouse_connect.get_client(host=store.host, port=store.port)
    ...     client.command("SELECT 1")
    1

Read-only access is enforced by ClickHouse itself (a chDB connection opened with ``mode=ro``),
for ``GET`` requests, requests with ``readonly=1`` (or 2) and the read-only user (default
``readonly``, no password, loopback clients only). See ``chstore_engine`` for the evidence.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import select
import signal
import subprocess
import sys
import threading
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from driftline.sdk.errors import ChStoreError, ConfigError, DriftlineError

if TYPE_CHECKING:
    from driftline.collector.embedded.chstore_engine import EnginePool

READY_PREFIX = "driftline-chstore ready "
LOCK_NAME = ".driftline-chstore.lock"
CONFIG_NAME = ".driftline-chstore.xml"  # written at every start from ChStoreSettings, never edited


@dataclass(frozen=True)
class ChStoreSettings:
    """Settings of one embedded store process (built once at the entry point)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8123
    readonly_user: str = "readonly"
    readonly_password: str | None = None
    default_password: str | None = None
    rw_connections: int = 2
    ro_connections: int = 2
    max_query_bytes: int = 16 << 20
    shutdown_timeout_s: float = 30.0
    # Each of ClickHouse's mark, index-mark and primary-index caches is 5 GiB by default: sized for
    # a server, not a process beside a laptop's models. The store's data is small; so are they.
    cache_mib: int = 64
    # Every merge and every insert into a ReplacingMergeTree leaves source parts "outdated": on disk,
    # and as part objects in memory, until MergeTree's cleanup task removes them. That task backs
    # off up to max_cleanup_delay_period (300 s by default): in a 1,000 events/s soak it removed
    # them every ~4 minutes, in between 1,000-2,000 outdated parts and up to 467 MiB on disk for
    # ~90 MiB of data (bench/README.md, soak). chDB keeps old_parts_lifetime at 0, so once the task
    # runs they go at once; these bound how long they wait.
    cleanup_delay_s: int = 5
    max_cleanup_delay_s: int = 30

    @property
    def config_path(self) -> Path:
        """The engine's config file, written at start-up from these settings (its one home)."""
        return self.data_dir / CONFIG_NAME

    def merge_tree_settings(self) -> dict[str, str]:
        """MergeTree defaults for every table of this store (the config file's ``merge_tree``)."""
        return {"cleanup_delay_period": str(self.cleanup_delay_s),
                "max_cleanup_delay_period": str(self.max_cleanup_delay_s)}

    def config_xml(self) -> str:
        rows = "".join(f"    <{k}>{v}</{k}>\n" for k, v in self.merge_tree_settings().items())
        return f"<clickhouse>\n  <merge_tree>\n{rows}  </merge_tree>\n</clickhouse>\n"

    def server_settings(self, engine_dir: Path) -> dict[str, str]:
        """Engine (server-level) settings this store starts chDB with (``config-file``: the file
        :meth:`config_xml` is written to, as seen through ``engine_dir``, see :func:`engine_dir`;
        nested sections such as ``merge_tree`` only take effect from a file)."""
        size = str(self.cache_mib * 2**20)
        return {"mark_cache_size": size, "index_mark_cache_size": size, "primary_index_cache_size": size,
                "config-file": str(engine_dir / CONFIG_NAME)}

    def __post_init__(self) -> None:
        if self.rw_connections < 1 or self.ro_connections < 1:
            raise ConfigError("chstore: rw_connections and ro_connections must be >= 1")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"chstore: port {self.port} is out of range 0..65535")
        if self.cache_mib < 1:
            raise ConfigError(f"chstore: cache_mib must be >= 1 (got {self.cache_mib})")
        if not 1 <= self.cleanup_delay_s < self.max_cleanup_delay_s:
            raise ConfigError("chstore: need 1 <= cleanup_delay_s < max_cleanup_delay_s "
                              f"(got {self.cleanup_delay_s} and {self.max_cleanup_delay_s})")


def _parse_user(spec: str) -> tuple[str, str | None]:
    name, sep, password = spec.partition(":")
    if not name:
        raise ConfigError(f"--readonly-user {spec!r}: expected NAME or NAME:PASSWORD")
    return name, (password if sep else None)


_URL_CHARS = frozenset("?&=")


def engine_dir(data_dir: Path) -> Path:
    """The path chDB is given for ``data_dir``: its resolved path, or, when that path holds ``?``,
    ``&`` or ``=`` (chDB parses its argument as ``path?setting=value&...`` and would cut the path
    there), a symlink to it without them in the temp directory, named by a hash of the path.
    Call with the data dir's lock held (two stores never share a data dir, so never a link)."""
    real = data_dir.resolve()
    if not _URL_CHARS & set(str(real)):
        return real
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    alias = Path(tempfile.gettempdir()).resolve() / f"driftline-chstore-{digest}"
    if _URL_CHARS & set(str(alias)):
        raise ChStoreError(f"data dir {data_dir}: its path holds '?', '&' or '=', which chDB cannot open, and "
                           f"the temp directory {alias.parent} (for a link without them) does too; set TMPDIR")
    if alias.is_symlink() and os.readlink(alias) == str(real):
        return alias
    try:
        if alias.is_symlink():
            alias.unlink()
        alias.symlink_to(real, target_is_directory=True)
    except OSError as exc:
        raise ChStoreError(f"data dir {data_dir}: its path holds '?', '&' or '=', which chDB cannot open, and a "
                           f"link without them could not be made at {alias}: {exc}") from None
    return alias


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory's exclusive lock or raise ChStoreError naming the holder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ChStoreError(
            f"data dir {data_dir} is in use by {holder}; a chDB data directory can be opened by one "
            "process only: connect to that store over HTTP, or stop it first") from None
    return handle


def serve(settings: ChStoreSettings, ready: IO[str] | None = None, stop: threading.Event | None = None) -> None:
    """Open the data dir, serve HTTP until ``stop`` is set (or SIGTERM/SIGINT), then close cleanly."""
    from driftline.collector.embedded.chstore_engine import EnginePool
    from driftline.collector.embedded.chstore_http import ChHttpServer, HttpSettings

    lock = lock_data_dir(settings.data_dir)
    settings.config_path.write_text(settings.config_xml())
    path = engine_dir(settings.data_dir)
    pool = EnginePool(str(path), settings.rw_connections, settings.ro_connections,
                      server_settings=settings.server_settings(path))
    try:
        _check_engine_config(pool, settings)
    except ChStoreError:
        pool.close()
        raise
    http = ChHttpServer((settings.host, settings.port), pool, HttpSettings(
        readonly_user=settings.readonly_user, readonly_password=settings.readonly_password,
        default_password=settings.default_password, max_query_bytes=settings.max_query_bytes))
    host, port = http.server_address[:2]
    url = f"http://{host}:{port}"
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} serving {url}\n")
    lock.flush()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    server_thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                                     name="chstore-http", daemon=True)
    server_thread.start()
    if ready is not None:
        ready.write(f"{READY_PREFIX}{url}\n")
        ready.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        http.shutdown()  # stop accepting; requests already running keep their connection
        # Closing the pool waits until every in-flight statement returned its connection.
        pool.close(settings.shutdown_timeout_s)
        http.server_close()
        lock.close()


def _check_engine_config(pool: EnginePool, settings: ChStoreSettings) -> None:
    """chDB ignores a config file it cannot read or a path it cannot parse, silently: check that
    the engine runs with the file's values, else refuse to start."""
    wanted = settings.merge_tree_settings()
    names = ", ".join(f"'{name}'" for name in wanted)
    with pool.acquire(readonly=False) as conn:
        body = conn.run(f"SELECT name, value FROM system.merge_tree_settings WHERE name IN ({names})",
                        "TabSeparated", {}).body.decode()
    actual = dict(line.split("\t", 1) for line in body.splitlines())
    if actual != wanted:
        raise ChStoreError(f"the engine did not take its config {settings.config_path} (merge_tree settings "
                           f"{actual}, expected {wanted})")


class ChStoreProcess:
    """A running store subprocess. ``url``, ``host``, ``port``; ``stop(timeout_s)``; context manager."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        rest = url.split("://", 1)[1]
        self.host, port = rest.rsplit(":", 1)
        self.port = int(port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout_s`` for a clean exit, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> ChStoreProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_chstore(data_dir: str | Path, port: int = 0, host: str = "127.0.0.1", *,
                  startup_timeout_s: float = 60.0, extra_args: tuple[str, ...] = ()) -> ChStoreProcess:
    """Start the store as a subprocess and wait until it serves. Raises ChStoreError on failure."""
    cmd = [sys.executable, "-m", "driftline.collector.embedded.chstore", "--data-dir", str(data_dir),
           "--host", host, "--port", str(port), *extra_args]
    # stderr goes to a file, not a pipe: nobody reads a pipe once the store runs, and a full pipe
    # would block the store. Its own session: a terminal's Ctrl-C must not stop it before the
    # collector has drained.
    from driftline.collector.embedded.lifeline import LIFELINE_GRACE_S, die_with_parent, lifeline_env

    err_file = tempfile.TemporaryFile(mode="w+")
    # SIGTERM when the parent dies (even by SIGKILL): the store closes cleanly and frees its port,
    # or is gone LIFELINE_GRACE_S later.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, start_new_session=True,
                            env={**os.environ, **lifeline_env(LIFELINE_GRACE_S)},
                            preexec_fn=die_with_parent(signal.SIGTERM))
    deadline = time.monotonic() + startup_timeout_s
    assert proc.stdout is not None
    line = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY_PREFIX):
                return ChStoreProcess(proc, line[len(READY_PREFIX):].strip())
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    err_file.seek(0)
    err = err_file.read().strip().splitlines()
    proc.stdout.close()
    err_file.close()
    detail = err[-1] if err else f"no ready line within {startup_timeout_s} s"
    raise ChStoreError(f"embedded ClickHouse store did not start on {data_dir}: {detail}")


def main(argv: list[str] | None = None) -> int:
    from driftline.collector.embedded.lifeline import keep_lifeline

    keep_lifeline()  # under `driftline up`: gone soon after up is, even mid-way through a clean stop
    p = argparse.ArgumentParser(prog="python -m driftline.collector.embedded.chstore", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, type=Path, help="chDB data directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    p.add_argument("--readonly-user", default="readonly", help="NAME[:PASSWORD] of the read-only user")
    p.add_argument("--password", default=None, help="password of the read-write 'default' user "
                   "(without one, only loopback clients are accepted)")
    p.add_argument("--rw-connections", type=int, default=2)
    p.add_argument("--ro-connections", type=int, default=2)
    p.add_argument("--cache-mib", type=int, default=ChStoreSettings.cache_mib,
                   help="size of each of the engine's mark, index-mark and primary-index caches, MiB "
                        f"(default {ChStoreSettings.cache_mib})")
    args = p.parse_args(argv)
    try:
        ro_name, ro_password = _parse_user(args.readonly_user)
        settings = ChStoreSettings(
            data_dir=args.data_dir, host=args.host, port=args.port, readonly_user=ro_name,
            readonly_password=ro_password, default_password=args.password,
            rw_connections=args.rw_connections, ro_connections=args.ro_connections, cache_mib=args.cache_mib)
        serve(settings, ready=sys.stdout)
    except DriftlineError as exc:
        print(f"driftline-chstore: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
