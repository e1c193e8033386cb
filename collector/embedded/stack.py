"""``driftline up``: the whole stack on one machine, no Docker, supervised.

Starts what is not configured externally — the embedded ClickHouse store (chDB behind ClickHouse's
HTTP interface) and the embedded Kafka broker (Tansu, memory storage) — then the collector, the
dashboard, the alerting service when rules are given, and the demo when asked (with no rules, the
demo brings its own, delivered to a local receiver that prints each message: ``demo_alerting``).
With both ``DRIFTLINE_KAFKA_BOOTSTRAP`` and ``DRIFTLINE_CLICKHOUSE_URL`` set, no embedded engine
starts.

Every child is supervised (``supervisor``): one that crashes is restarted with backoff, logged and
counted; none can outlive ``up`` (``lifeline``). Everything the stack owns lives under
``--data-dir``: the store, logs, the alerting outbox and incident state, and the collector's
settings, which it receives whole as a file.

The stop (SIGTERM, or SIGINT unless it was inherited ignored) loses nothing: the demo stops, then
``up`` waits until the collector has stored and committed every record the embedded broker holds,
then stops the collector, alerting, the dashboard, the broker and the store, in that order. If the
drain does not finish within ``--drain-timeout-s`` it says how many records are still only in the
broker and keeps waiting; ``--force`` (or a second signal) stops anyway and says what was dropped
(``drain``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from driftline.collector.config import CollectorSettings
from driftline.collector.embedded.broker import port_in_use
from driftline.collector.topics import ensure_topics
from driftline.collector.embedded.drain import BacklogWatch, drain_broker
from driftline.collector.embedded.lifeline import LIFELINE_GRACE_S, die_with_parent, lifeline_env
from driftline.collector.embedded.supervisor import Child, GiveUp, ServiceProcess, Supervisor
from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")

STOP_ORDER = ["demo", "collector", "alerting", "receiver", "dashboard", "broker", "store"]


@dataclass(frozen=True)
class StackOptions:
    settings: CollectorSettings
    kafka_port: int = 9092
    clickhouse_port: int = 8123
    dashboard_port: int = 8501
    dashboard: bool = True
    demo: bool = False
    demo_args: tuple[str, ...] = ()
    alert_rules: Path | None = None
    drain_timeout_s: float = 120.0
    force: bool = False
    broker_max_mib: int = 256  # 0: never empty the embedded broker's topics
    broker_check_s: float = 30.0
    broker_hold_s: float = 4.0  # longest hold of producers per rotation: under the SDK's 5 s request timeout
    print_fn: Callable[[str], None] = print
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    """The running stack. ``start()`` then ``wait()``; ``request_stop()`` from a signal handler."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.settings = options.settings
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.logs = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.kafka_bootstrap = self.settings.kafka_bootstrap
        self.clickhouse_url = self.settings.clickhouse_url
        self.embedded_broker = not self.kafka_bootstrap
        self.embedded_store = not self.clickhouse_url
        self.supervisor = Supervisor(print_fn=options.print_fn)
        self.stop_requests = 0
        self.backlog = BacklogWatch(self)
        self.dropped = 0
        self.gate: Any = None  # the produce gate in front of the embedded broker
        self.rotator: Any = None
        self.demo_env: dict[str, str] = {}  # the demo's alerting: receiver addresses and secrets
        self.demo_alerting: Any = None  # its receiver's listening sockets, held while the stack runs

    @property
    def topics(self) -> list[str]:
        return self.settings.topics.event_topics()

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        o = self.options
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, port, flag, needed in (
            ("Kafka", o.kafka_port, "--kafka-port", self.embedded_broker),
            ("ClickHouse", o.clickhouse_port, "--clickhouse-port", self.embedded_store),
            ("dashboard", o.dashboard_port, "--dashboard-port", o.dashboard),
            ("collector metrics", self.settings.metrics_port, "--metrics-port", True),
        ):
            if needed and port and port_in_use("127.0.0.1", port):
                raise ConfigError(f"port {port} for the {name} is already in use; choose another with {flag} "
                                  "(or stop the other driftline)")
        try:
            self._start_children()
        except BaseException:
            self.supervisor.stop_all(STOP_ORDER)
            self._release_demo_sockets()
            raise
        self._print_endpoints()

    def _start_children(self) -> None:
        o, sup = self.options, self.supervisor
        if self.embedded_store:
            from driftline.collector.embedded.chstore import start_chstore

            store = sup.add(Child("store", lambda: start_chstore(self.data_dir / "clickhouse", port=o.clickhouse_port),
                                  stop_timeout_s=30))
            self.clickhouse_url = store.handle.url  # type: ignore[union-attr]
        if self.embedded_broker:
            broker = sup.add(Child("broker", self._launch_broker, stop_timeout_s=5, log_path=self.logs / "broker.log",
                                   on_restart=self._broker_restarted))
            self.kafka_bootstrap = broker.handle.bootstrap  # type: ignore[union-attr]
        t = self.settings.topics
        ensure_topics(self.kafka_bootstrap, [*t.event_topics(), t.deadletter],
                      partitions=self.settings.partitions)
        from driftline.collector.store import connect, migrate

        migrate(connect(self.clickhouse_url, retry_for_s=30))
        settings_file = self._write_collector_settings()
        self._spawn("collector", ["collector", "--settings-file", str(settings_file)])
        if o.dashboard and _has_dashboard():
            self._spawn("dashboard", ["dashboard", "--port", str(o.dashboard_port),
                                      "--clickhouse-url", self.clickhouse_url])
        dashboard_url = f"http://127.0.0.1:{o.dashboard_port}" if sup.get("dashboard") else ""
        rules = o.alert_rules
        if o.demo and rules is None:  # the demo's own rules, delivered to a local receiver that prints
            from driftline.collector.embedded.demo_alerting import prepare

            self.demo_alerting = demo_alerting = prepare(self.run_dir, dashboard_url)
            self.demo_env = demo_alerting.env
            rules = demo_alerting.rules_path
            self._spawn("receiver", demo_alerting.receiver_args, stop_timeout_s=5, pass_fds=demo_alerting.fds)
        if rules is not None:
            self._spawn("alerting", ["alerts", "run", "--rules", str(rules), "--clickhouse-url",
                                     self.clickhouse_url, "--data-dir", str(self.data_dir / "alerting")])
        if o.demo:
            guide = ["--dashboard-url", dashboard_url] if dashboard_url else []
            self._spawn("demo", ["demo", *o.demo_args, *guide], stop_timeout_s=15, restart="on_failure")
        if self.embedded_broker:
            self.backlog.start()
            if o.broker_max_mib:
                self._start_rotator()

    def _launch_broker(self) -> Any:
        """Tansu on a private port behind the produce gate, which owns the public Kafka port; a
        restart puts a new Tansu behind the same gate."""
        from driftline.collector.embedded.produce_gate import start_broker_behind, start_gated_broker

        log = self.logs / "broker.log"
        if not self.options.broker_max_mib:  # nothing to rotate: no gate in the way
            from driftline.collector.embedded.broker import start_broker

            return start_broker(self.options.kafka_port, log_path=log)
        if self.gate is None:
            broker, self.gate = start_gated_broker(self.options.kafka_port, log_path=log)
            return broker
        return start_broker_behind(self.gate, log_path=log)

    def _start_rotator(self) -> None:
        """Bounded broker memory: when Tansu's resident memory reaches --broker-max-mib, empty its
        topics once the collector has committed everything (``broker_retention``)."""
        from driftline.collector.embedded.broker_retention import TopicRotator

        def broker_pid() -> int | None:
            child = self.supervisor.get("broker")
            return child.handle.proc.pid if child and child.handle else None

        self.rotator = TopicRotator(
            self.kafka_bootstrap, self.settings.group_id, self.topics, gate=self.gate,  # type: ignore[arg-type]
            stop_consumers=lambda: self.supervisor.hold("collector"),
            start_consumers=lambda: self.supervisor.release("collector"),
            broker_pid=broker_pid, max_rss_bytes=self.options.broker_max_mib * 2**20,
            interval_s=self.options.broker_check_s, drain_timeout_s=self.options.broker_hold_s)
        self.rotator.start()

    def _write_collector_settings(self) -> Path:
        """The collector's settings, whole, with the engines this stack resolved."""
        from dataclasses import replace

        effective = replace(self.settings, kafka_bootstrap=self.kafka_bootstrap, clickhouse_url=self.clickhouse_url,
                            data_dir=self.data_dir)
        path = self.run_dir / "collector-settings.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold a ClickHouse password
        with os.fdopen(fd, "w") as f:
            f.write(effective.to_json())
        return path

    def child_env(self) -> dict[str, str]:
        """What a child inherits: this environment, the engines' addresses (for the demo, which
        uses the SDK like any model process) and no Streamlit telemetry."""
        topics = self.settings.topics
        env = {**os.environ, **self.options.extra_env, **self.demo_env,
               "DRIFTLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
               "DRIFTLINE_CLICKHOUSE_URL": self.clickhouse_url,
               "DRIFTLINE_TOPIC_PREFIX": topics.predictions.rsplit(".", 1)[0],
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        return env

    def _spawn(self, name: str, args: list[str], *, stop_timeout_s: float = 30.0, restart: str = "always",
               pass_fds: tuple[int, ...] = ()) -> None:
        log_path = self.logs / f"{name}.log"

        def launch() -> ServiceProcess:
            with open(log_path, "ab") as log:
                # A session of its own: Ctrl-C in the terminal reaches `up` only, which then stops
                # the services in order (a collector killed by the same SIGINT could not drain).
                # SIGTERM if `up` dies, even by SIGKILL: nothing outlives it.
                # The dashboard execs Streamlit, which keeps no lifeline thread and holds nothing: SIGKILL.
                proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", *args],
                                        env={**self.child_env(), **lifeline_env(LIFELINE_GRACE_S)},
                                        stdout=None if name in ("demo", "receiver") else log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=pass_fds,
                                        preexec_fn=die_with_parent(signal.SIGKILL if name == "dashboard"
                                                                   else signal.SIGTERM))
            return ServiceProcess(proc)

        self.supervisor.add(Child(name, launch, stop_timeout_s=stop_timeout_s, restart=restart, log_path=log_path))

    def _broker_restarted(self, child: Child) -> None:
        held = self.backlog.last_total
        t = self.settings.topics
        ensure_topics(self.kafka_bootstrap, [*t.event_topics(), t.deadletter],
                      partitions=self.settings.partitions)
        self.backlog.reset()
        # The collector's consumer still holds positions in the old topics; a position past a new
        # topic's end reads nothing and raises nothing on Tansu, so it would skip new records.
        # Started again, it reads the new topics from their first offset.
        self.supervisor.hold("collector")
        self.supervisor.release("collector")
        what = "an unknown number of" if held is None else f"up to {held}"
        msg = (f"driftline: the embedded broker was restarted with its topics; it may have held {what} "
               "records the collector had not stored yet, and those are lost (memory storage)")
        self.options.print_fn(msg)
        logger.warning("%s", msg)

    def _print_endpoints(self) -> None:
        p, sup = self.options.print_fn, self.supervisor
        p("driftline is up")
        p(f"  Kafka bootstrap     {self.kafka_bootstrap}{'  (embedded Tansu, in-memory)' if self.embedded_broker else ''}")
        store = f"  (embedded chDB, {self.data_dir / 'clickhouse'})" if self.embedded_store else ""
        p(f"  ClickHouse HTTP     {self.clickhouse_url}{store}")
        p(f"  collector           http://127.0.0.1:{self.settings.metrics_port}/metrics")
        if sup.get("dashboard"):
            p(f"  dashboard           http://127.0.0.1:{self.options.dashboard_port}")
        if sup.get("alerting"):
            p(f"  alerting state      {self.data_dir / 'alerting'}")
        if sup.get("receiver"):
            p(f"  alert receiver      Slack, PagerDuty and retraining webhook on 127.0.0.1, printed below "
              "as 'receiver:' lines (demo rules: accuracy per region < 0.85)")
        p(f"  logs                {self.logs}")
        p("  SQL                 driftline sql \"SELECT model, count() FROM driftline.predictions GROUP BY model\"")
        p("Press Ctrl-C to stop.")

    # -- run / stop ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """From a signal handler: the first request stops in order, the second forces the stop."""
        self.stop_requests += 1

    def wait(self) -> int:
        """Supervise until a stop is requested. Returns 1 if a child kept crashing."""
        rotations = 0
        try:
            while not self.stop_requests:
                self.supervisor.tick()
                if self.rotator is not None and self.rotator.rotations != rotations:
                    rotations, last = self.rotator.rotations, self.rotator.last
                    self.options.print_fn(
                        f"driftline: emptied the embedded broker's topics ({last.records_freed} records, all stored "
                        f"and committed; producers held {last.held_s:.1f} s; rotation {rotations})")
                time.sleep(0.25)
        except GiveUp as exc:
            self.options.print_fn(f"driftline: {exc}")
            return 1
        return 0

    def stop(self) -> None:
        """Stop in order, draining the embedded broker first. Safe to call more than once."""
        sup = self.supervisor
        if self.rotator is not None:
            self.rotator.stop()  # a rotation under way finishes first
            self.rotator = None
        sup.stop("demo")
        if self.embedded_broker and sup.running("broker") and sup.get("collector"):
            self._drain()
        self.backlog.stop()
        sup.stop_all(STOP_ORDER)
        self._release_demo_sockets()
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
        if sup.restarts:
            self.options.print_fn("driftline: restarts: " + ", ".join(f"{n} {k}" for n, k in sup.restarts.items()))

    def _release_demo_sockets(self) -> None:
        """Close the demo receiver's listening sockets (once its child is stopped)."""
        if self.demo_alerting is not None:
            self.demo_alerting.close()
            self.demo_alerting = None

    def _drain(self) -> None:
        """Until the collector has committed everything the broker holds, or the stop is forced."""
        drain_broker(self)


def _has_dashboard() -> bool:
    """Whether this build has the dashboard, whose command ``up`` starts as a child process.
    Looked up, not imported: the collector sits below the dashboard in the import graph."""
    import importlib.util

    return importlib.util.find_spec("driftline.dashboard") is not None


def run_up(options: StackOptions) -> int:
    """The process entry point of ``driftline up``: start, supervise, stop in order on a signal."""
    import signal

    stack = Stack(options)
    # up's own Kafka clients (drain, backlog sampling, rotation) log every lost connection of a broker
    # restart or a topic re-creation as an error; up reports those events itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    def on_signal(signum: int, frame: Any) -> None:
        stack.request_stop()

    handled = [signal.SIGTERM]
    # A background job of a shell script inherits SIGINT ignored; keep that convention.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    code = 1
    try:
        stack.start()
        code = stack.wait()
        options.print_fn("driftline: stopping (demo, collector drains the broker, dashboard, broker, store)...")
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        options.print_fn("driftline: stopped")
    return 1 if code or stack.dropped else 0
