"""``driftline up``: the whole stack on one machine, no Docker.

Starts what is not configured externally — the embedded ClickHouse store (chDB behind ClickHouse's
HTTP interface) and the embedded Kafka broker (Tansu) — then the collector, the dashboard, the
alerting service when rules are given, and the demo when asked. With both
``DRIFTLINE_KAFKA_BOOTSTRAP`` and ``DRIFTLINE_CLICKHOUSE_URL`` set, no embedded engine starts.

Shutdown order (Ctrl-C or SIGTERM): producers (demo) first, then the collector drains and commits,
then dashboard and alerting, then the broker (it keeps nothing: memory storage), then the store.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from driftline.collector.broker import BrokerProcess, ensure_topics, port_open, start_broker
from driftline.collector.config import CollectorSettings
from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    endpoint: str = ""
    stop_timeout_s: float = 30.0


@dataclass
class StackOptions:
    settings: CollectorSettings
    kafka_port: int = 9092
    clickhouse_port: int = 8123
    dashboard_port: int = 8501
    dashboard: bool = True
    demo: bool = False
    demo_args: tuple[str, ...] = ()
    alert_rules: Path | None = None
    print_fn: Callable[[str], None] = print
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    """The running stack. ``start()`` then ``wait()``; ``stop()`` from any thread."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.settings = options.settings
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.logs = self.data_dir / "logs"
        self.store: Any = None
        self.broker: BrokerProcess | None = None
        self.services: list[Service] = []
        self.kafka_bootstrap = self.settings.kafka_bootstrap
        self.clickhouse_url = self.settings.clickhouse_url
        self._stopping = threading.Event()

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        o = self.options
        self.logs.mkdir(parents=True, exist_ok=True)
        for name, port, flag, needed in (
            ("Kafka", o.kafka_port, "--kafka-port", not self.kafka_bootstrap),
            ("ClickHouse", o.clickhouse_port, "--clickhouse-port", not self.clickhouse_url),
            ("dashboard", o.dashboard_port, "--dashboard-port", o.dashboard),
            ("collector metrics", self.settings.metrics_port, "--metrics-port", True),
        ):
            if needed and port and port_open("127.0.0.1", port):
                raise ConfigError(f"port {port} for the {name} is already in use; choose another with {flag} "
                                  "(or stop the other driftline)")
        try:
            if not self.clickhouse_url:
                from driftline.collector.chstore import start_chstore

                self.store = start_chstore(self.data_dir / "clickhouse", port=o.clickhouse_port)
                self.clickhouse_url = self.store.url
            if not self.kafka_bootstrap:
                self.broker = start_broker(o.kafka_port, log_path=self.logs / "broker.log")
                self.kafka_bootstrap = self.broker.bootstrap
            t = self.settings.topics
            ensure_topics(self.kafka_bootstrap, [t.predictions, t.labels, t.outcomes, t.deadletter],
                          partitions=self.settings.partitions)
            from driftline.collector.clickhouse import connect
            from driftline.collector.tables import migrate

            migrate(connect(self.clickhouse_url, retry_for_s=30))
            self._spawn("collector", ["collector"], endpoint=f"http://127.0.0.1:{self.settings.metrics_port}/metrics")
            if o.dashboard:
                self._spawn("dashboard", ["dashboard", "--port", str(o.dashboard_port)],
                            endpoint=f"http://127.0.0.1:{o.dashboard_port}", optional=True)
            if o.alert_rules is not None:
                self._spawn("alerting", ["alerts", "run", "--rules", str(o.alert_rules)])
            if o.demo:
                self._spawn("demo", ["demo", *o.demo_args], stop_timeout_s=15)
        except BaseException:
            self.stop()
            raise
        self._print_endpoints()

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.options.extra_env,
               "DRIFTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
               "DRIFTLINE_CLICKHOUSE_URL": self.clickhouse_url,
               "DRIFTLINE_DATA_DIR": str(self.data_dir),
               "DRIFTLINE_METRICS_PORT": str(self.settings.metrics_port),
               "DRIFTLINE_PARTITIONS": str(self.settings.partitions),
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        for name, value in (("DRIFTLINE_DETECTORS_CONFIG", self.settings.detectors_config),
                            ("DRIFTLINE_PII_CONFIG", self.settings.pii_config),
                            ("DRIFTLINE_PII_KEY_FILE", self.settings.pii_key_file)):
            if value is not None:
                env[name] = str(value)
        return env

    def _spawn(self, name: str, args: list[str], *, endpoint: str = "", stop_timeout_s: float = 30.0,
               optional: bool = False) -> None:
        if optional and name == "dashboard":
            try:
                import driftline.dashboard.cli  # noqa: F401
            except ModuleNotFoundError:
                return
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        # A session of its own: Ctrl-C in the terminal reaches `up` only, which then stops the
        # services in order (a collector killed by the same SIGINT could not drain the broker).
        proc = subprocess.Popen([sys.executable, "-m", "driftline.sdk.cli", *args], env=self.env(),
                                stdout=log if name != "demo" else None, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.services.append(Service(name, proc, endpoint, stop_timeout_s))

    def _print_endpoints(self) -> None:
        p = self.options.print_fn
        p("driftline is up")
        p(f"  Kafka bootstrap     {self.kafka_bootstrap}{'  (embedded Tansu, in-memory)' if self.broker else ''}")
        p(f"  ClickHouse HTTP     {self.clickhouse_url}{'  (embedded chDB, ' + str(self.data_dir / 'clickhouse') + ')' if self.store else ''}")
        for s in self.services:
            if s.endpoint:
                p(f"  {s.name:<19} {s.endpoint}")
        p(f"  logs                {self.logs}")
        p("  SQL                 driftline sql \"SELECT model, count() FROM driftline.predictions GROUP BY model\"")
        p("Press Ctrl-C to stop.")

    # -- run / stop ---------------------------------------------------------------------------
    def wait(self) -> int:
        """Block until stop() or a vital service dies. Returns an exit code."""
        while not self._stopping.wait(0.5):
            for s in self.services:
                code = s.proc.poll()
                if code is not None and s.name == "demo":
                    self.services.remove(s)
                    break
                if code is not None:
                    self.options.print_fn(f"driftline: {s.name} exited with code {code}; see {self.logs / (s.name + '.log')}")
                    self.stop()
                    return 1
        return 0

    def stop(self) -> None:
        self._stopping.set()
        order = ["demo", "sidecar", "collector", "alerting", "dashboard"]
        for name in order + [s.name for s in self.services if s.name not in order]:
            for s in [s for s in self.services if s.name == name]:
                if name == "collector" and self.broker is not None and s.proc.poll() is None:
                    self._drain()
                _terminate(s.proc, s.stop_timeout_s)
                self.services.remove(s)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.store is not None:
            self.store.stop()
            self.store = None


    def _drain(self) -> None:
        """Producers are stopped; let the collector store what the in-memory broker still holds."""
        from driftline.collector.broker import wait_drained

        t = self.settings.topics
        try:
            wait_drained(self.kafka_bootstrap, self.settings.group_id, [t.predictions, t.labels, t.outcomes],
                         timeout_s=30)
        except Exception as exc:  # noqa: BLE001 - a failed check must not block shutdown
            logger.warning("could not check the collector's progress (%s); stopping it", type(exc).__name__)


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run_up(options: StackOptions) -> int:
    stack = Stack(options)

    def on_signal(signum: int, frame: Any) -> None:
        stack._stopping.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        try:
            code = stack.wait()
        except KeyboardInterrupt:
            code = 0
        options.print_fn("driftline: stopping (demo, collector drains, broker, store)...")
        return code
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
        options.print_fn("driftline: stopped")
