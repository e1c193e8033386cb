"""``driftline up`` as a real process for tests: free ports, its output, its children, counting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from driftline.collector.embedded.broker import free_port


#: `driftline up --demo` on a compressed schedule (a test's few minutes instead of the demo's ~7):
#: twice the traffic, so the 2,500-event reference fills in ~25 s; the drift begins once the first
#: verdicts are in and lasts until the incident opens (see collector/embedded/demo.py).
DEMO_FAST = ("--demo", "--demo-rate", "100", "--demo-drift-after-s", "20", "--demo-drift-for-s", "30")


def demo_up(data_dir: Path, *, dashboard: bool = True) -> Up:
    """The demo stack (broker, store, collector, dashboard, alerting with the demo rules, the local
    receiver, the demo and its guide) on the compressed schedule, up. For the dashboard's browser
    checks of the demo's state change: ``up.ports["dashboard"]``, and ``up.wait_printed("demo guide
    [incident]")`` / ``("demo guide [resolved]")`` mark the stages."""
    return Up(data_dir, *DEMO_FAST, dashboard=dashboard).wait_up()


class Up:
    """One ``driftline up`` process. ``stdout`` is read by a thread into ``lines``."""

    def __init__(self, data_dir: Path, *extra: str, ports: dict[str, int] | None = None, dashboard: bool = False,
                 sigint: str = "default", env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.ports = ports or {name: free_port() for name in ("kafka", "clickhouse", "metrics", "dashboard")}
        args = [sys.executable, "-m", "driftline.cli", "up", "--data-dir", str(data_dir),
                "--kafka-port", str(self.ports["kafka"]), "--clickhouse-port", str(self.ports["clickhouse"]),
                "--metrics-port", str(self.ports["metrics"])]
        args += ["--dashboard-port", str(self.ports["dashboard"])] if dashboard else ["--no-dashboard"]
        # As a user's shell: no DRIFTLINE_* and no PYTHONUNBUFFERED (which would hide up's buffering).
        base = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_") and k != "PYTHONUNBUFFERED"}
        # A terminal's foreground job has SIGINT at its default; a background job of a script has
        # it ignored, and a child inherits an ignored signal through exec.
        disposition = signal.SIG_DFL if sigint == "default" else signal.SIG_IGN
        self.proc = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env={**base, **(env or {})},
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def clickhouse_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['clickhouse']}"

    def wait_printed(self, marker: str, timeout_s: float = 120, after: int = 0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker in "".join(self.lines[after:]):
                return
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"{marker!r} not printed by driftline up; got:\n{self.output}")

    def wait_up(self) -> Up:
        self.wait_printed("Press Ctrl-C")
        return self

    def children(self) -> dict[str, int]:
        """pid of each child by name (store, broker, collector, dashboard, alerting, demo)."""
        # -ww: without a terminal ps may cut each line at 80 columns, and a long venv path then
        # cuts off the module name that tells the store (driftline.collector.embedded.chstore).
        out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        found: dict[str, int] = {}
        for line in out.splitlines():
            pid, _, cmd = line.strip().partition(" ")
            for name, needle in (("store", "driftline.collector.embedded.chstore"), ("broker", " broker --listener-url"),
                                 ("collector", "cli collector"), ("dashboard", "-m streamlit run"),
                                 ("alerting", "cli alerts run"), ("demo", "cli demo")):
                if needle in cmd:
                    found[name] = int(pid)
        return found

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 180) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        self._reader.join(10)
        return code

    def kill_all(self) -> None:
        """Test clean-up: whatever is left of this stack."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def client(url: str) -> Any:
    import clickhouse_connect

    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    return clickhouse_connect.get_client(host=host, port=int(port))


def stored(url: str, model: str) -> tuple[int, int]:
    """(rows, distinct event ids) of ``model`` in driftline.predictions."""
    rows = client(url).query("SELECT count(), uniqExact(event_id) FROM driftline.predictions WHERE model = %(m)s",
                             parameters={"m": model}).result_rows[0]
    return int(rows[0]), int(rows[1])


def stored_offline(data_dir: Path, model: str) -> tuple[int, int]:
    """The same, from a store opened on the data directory after the stack stopped."""
    from driftline.collector.embedded.chstore import start_chstore

    with start_chstore(data_dir / "clickhouse") as store:
        return stored(store.url, model)


def send(bootstrap: str, model: str, n: int, *, rate_per_s: float = 0.0,
         during: Callable[[int], None] | None = None, back_s: Callable[[int], float] | None = None) -> set[str]:
    """Log ``n`` predictions with the SDK and flush; returns the acknowledged event ids.

    ``rate_per_s`` spreads them over time; ``during(i)`` is called every 1,000 events (to inject
    a fault mid-stream); ``back_s(i)`` dates event ``i`` that many seconds in the past."""
    from driftline.sdk import Monitor
    from driftline.sdk.config import SdkSettings

    monitor = Monitor(model=model, version="1", settings=SdkSettings(kafka_bootstrap=bootstrap))
    ids: set[str] = set()
    started = time.monotonic()
    try:
        for i in range(n):
            at = time.time_ns() - int(back_s(i) * 1e9) if back_s is not None else None
            ids.add(monitor.log(features={"x": i * 0.5, "c": "abc"[i % 3]}, prediction=i % 2, timestamp_ns=at))
            if during is not None and i % 1000 == 999:
                during(i)
            if rate_per_s and i % 100 == 99:
                ahead = started + (i + 1) / rate_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        assert monitor.flush(timeout_s=120), monitor.stats()
        stats = monitor.stats()
        assert stats.exported == n and not any(stats.dropped.values()), stats
    finally:
        monitor.close(timeout_s=10)
    return ids


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
