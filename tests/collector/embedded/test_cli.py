"""The command line a user touches: `driftline up` (endpoints, demo traffic, a clean stop that keeps the
data, external engines, flags it would ignore)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftline.collector.embedded.broker import free_port
from tests.conftest import wait_for


def start_up(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {name: free_port() for name in ("kafka", "clickhouse", "metrics", "dashboard")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "up", "--no-dashboard", "--data-dir", str(tmp_path / "data"),
         "--kafka-port", str(ports["kafka"]), "--clickhouse-port", str(ports["clickhouse"]),
         "--metrics-port", str(ports["metrics"]), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # As from a terminal: SIGINT at its default even when this suite runs as a background job
        # of a script (which inherits SIGINT ignored, and so would `up`).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        # No PYTHONUNBUFFERED, as in a user's shell: up's lines must reach the pipe when printed.
        env={k: v for k, v in os.environ.items()
             if k not in ("DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_CLICKHOUSE_URL", "PYTHONUNBUFFERED")})
    return proc, ports


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 90) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; got:\n{''.join(seen)}")


@pytest.mark.integration
def test_up_prints_endpoints_stores_demo_traffic_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    import clickhouse_connect

    proc, ports = start_up(tmp_path, "--demo", "--demo-rate", "100")
    try:
        banner = read_until(proc, "Press Ctrl-C")
        assert f"127.0.0.1:{ports['kafka']}" in banner and f"http://127.0.0.1:{ports['clickhouse']}" in banner
        assert f"http://127.0.0.1:{ports['metrics']}/metrics" in banner
        client = clickhouse_connect.get_client(host="127.0.0.1", port=ports["clickhouse"])
        count = lambda: client.query("SELECT count() FROM driftline.predictions").result_rows[0][0]  # noqa: E731
        # `up --demo` starts seven processes (with the demo's alerting and receiver): on a busy machine
        # their imports alone can take a minute before the first prediction is stored.
        wait_for(lambda: count() >= 200, timeout_s=240)
        wait_for(lambda: client.query("SELECT count() FROM driftline.labeled_predictions").result_rows[0][0] > 0, 120)
        variants = {r[0] for r in client.query("SELECT DISTINCT variant FROM driftline.predictions").result_rows}
        assert {"primary", "shadow", "challenger"} <= variants
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "driftline: stopped" in out
    stored = count_rows(tmp_path, ports)
    # The collector drained the in-memory broker before it stopped: every demo prediction is stored.
    served = int(out.split("demo: stopped after ")[1].split()[0])
    assert count_rows(tmp_path, ports, "variant != 'shadow'") == served
    assert stored >= 200
    # Restart on the same data directory: the prediction log is still there.
    proc, ports2 = start_up(tmp_path)
    try:
        read_until(proc, "Press Ctrl-C")
        client = clickhouse_connect.get_client(host="127.0.0.1", port=ports2["clickhouse"])
        assert client.query("SELECT count() FROM driftline.predictions").result_rows[0][0] == stored
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=90)
    assert proc.returncode == 0


def count_rows(tmp_path: Path, ports: dict[str, int], where: str = "1") -> int:
    from driftline.collector.embedded.chstore import start_chstore

    with start_chstore(tmp_path / "data" / "clickhouse") as store:
        import clickhouse_connect

        client = clickhouse_connect.get_client(host=store.host, port=store.port)
        return int(client.query(f"SELECT count() FROM driftline.predictions WHERE {where}").result_rows[0][0])


@pytest.mark.integration
def test_up_with_external_engines_starts_no_embedded_engine(tmp_path: Path, kafka_bootstrap: str, clickhouse_url: str) -> None:
    metrics = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftline.cli", "up", "--no-dashboard", "--data-dir", str(tmp_path),
         "--metrics-port", str(metrics)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, "DRIFTLINE_CLICKHOUSE_URL": clickhouse_url})
    try:
        banner = read_until(proc, "Press Ctrl-C")
        assert f"Kafka bootstrap     {kafka_bootstrap}\n" in banner and "embedded" not in banner
        assert not (tmp_path / "clickhouse").exists()
        children = subprocess.run(["pgrep", "-P", str(proc.pid), "-a"], capture_output=True, text=True).stdout
        assert "tansu" not in children and "chstore" not in children and "collector" in children
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize(("flags", "message"), [
    (["--kafka-bootstrap", "127.0.0.1:1", "--kafka-port", "9999"], "--kafka-port would be ignored"),
    (["--clickhouse-url", "http://127.0.0.1:1", "--clickhouse-port", "9999"], "--clickhouse-port would be ignored"),
    (["--no-dashboard", "--dashboard-port", "9999"], "--dashboard-port would be ignored"),
    (["--demo-rate", "10"], "--demo-rate would be ignored"),
    (["--demo-drift-for-s", "10"], "--demo-drift-for-s would be ignored"),
    (["--alert-rules", "/nonexistent/rules.yaml"], "does not exist"),
    (["--drain-timeout-s", "0"], "--drain-timeout-s must be > 0"),
])
def test_a_flag_up_would_ignore_is_an_error(tmp_path: Path, flags: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "driftline.cli", "up", "--data-dir", str(tmp_path), *flags],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")})
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "logs").exists()  # nothing started


class HeldPort:
    """A port held the two ways a server's bind can fail on: a listening server, or an open
    connection whose local end is the port (what an outgoing connection from the kernel's
    ephemeral range does, unseen by a connect check)."""

    def __init__(self, how: str) -> None:
        import socket

        # Bound to a port the kernel picks, kept bound: a port found free first and bound after
        # could be taken (or be in TIME_WAIT from an earlier case) in between.
        self.sockets: list[socket.socket] = []
        if how == "listener":
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            self.sockets.append(srv)
            self.port = srv.getsockname()[1]
        else:
            peer = socket.socket()
            peer.bind(("127.0.0.1", 0))
            peer.listen()
            conn = socket.socket()
            conn.bind(("127.0.0.1", 0))
            conn.connect(peer.getsockname())
            self.sockets += [peer, conn, peer.accept()[0]]
            self.port = conn.getsockname()[1]

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.mark.parametrize("how", ["listener", "connection"])
@pytest.mark.parametrize(("flag", "name"), [("--kafka-port", "Kafka"), ("--clickhouse-port", "ClickHouse"),
                                            ("--metrics-port", "collector metrics")])
def test_a_port_held_by_a_server_or_a_connection_is_refused_before_anything_starts(
        tmp_path: Path, how: str, flag: str, name: str) -> None:
    held = HeldPort(how)
    # Every other port free too (not up's defaults, which another stack on this machine may hold).
    ports = {f: str(free_port()) for f in ("--kafka-port", "--clickhouse-port", "--metrics-port")}
    ports[flag] = str(held.port)
    try:
        out = subprocess.run([sys.executable, "-m", "driftline.cli", "up", "--no-dashboard", "--data-dir",
                              str(tmp_path), *(x for kv in ports.items() for x in kv)], capture_output=True,
                             text=True, timeout=60,
                             env={k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")})
    finally:
        held.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"port {held.port} for the {name} is already in use; choose another with {flag}" in out.stderr
    assert "Traceback" not in out.stderr and "driftline is up" not in out.stdout
    assert not (tmp_path / "clickhouse").exists()  # nothing started


def test_free_ports_are_outside_the_range_outgoing_connections_take_theirs_from() -> None:
    from driftline.collector.embedded.broker import PRIVATE_PORTS_FROM, ephemeral_ports, port_in_use

    low, _ = ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    if low - PRIVATE_PORTS_FROM >= 1000:
        assert all(PRIVATE_PORTS_FROM <= p < low for p in ports), (low, ports)
    assert not any(port_in_use("127.0.0.1", p) for p in ports)
    for how in ("listener", "connection"):
        held = HeldPort(how)
        try:
            assert port_in_use("127.0.0.1", held.port), how
        finally:
            held.close()
