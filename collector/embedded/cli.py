"""CLI: ``driftline up``, ``driftline store``, ``driftline demo`` (the embedded stack's commands)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from driftline.collector.cli import add_server_flags, settings_from_args
from driftline.collector.embedded.demo import DemoOptions


def _line_buffered() -> None:
    """Each line printed is written at once, also into a pipe or a file (`driftline up | tee up.log`,
    a service manager, `up`'s own stdout for the demo), where Python would hold it back in an 8 KiB
    buffer: a user's shell has no PYTHONUNBUFFERED."""
    import sys

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


def _up(args: argparse.Namespace) -> int:
    from driftline.collector.embedded.stack import StackOptions, run_up
    from driftline.sdk.errors import ConfigError

    _line_buffered()  # the endpoints, exits and restarts as they happen

    settings = settings_from_args(args)
    # A flag that would be ignored is an error, not a silence.
    ignored = [
        ("--kafka-port", args.kafka_port, settings.kafka_bootstrap, "the broker is external (--kafka-bootstrap / "
         "DRIFTLINE_KAFKA_BOOTSTRAP)"),
        ("--clickhouse-port", args.clickhouse_port, settings.clickhouse_url, "the store is external "
         "(--clickhouse-url / DRIFTLINE_CLICKHOUSE_URL)"),
        ("--dashboard-port", args.dashboard_port, args.no_dashboard, "--no-dashboard is given"),
        ("--demo-rate", args.demo_rate, not args.demo, "--demo is not given"),
        ("--demo-drift-after-s", args.demo_drift_after_s, not args.demo, "--demo is not given"),
        ("--demo-drift-for-s", args.demo_drift_for_s, not args.demo, "--demo is not given"),
    ]
    for flag, value, condition, why in ignored:
        if value is not None and condition:
            raise ConfigError(f"{flag} would be ignored: {why}")
    demo_args: list[str] = []
    if args.demo_rate is not None:
        demo_args += ["--rate", str(args.demo_rate)]
    if args.demo_drift_after_s is not None:
        demo_args += ["--drift-after-s", str(args.demo_drift_after_s)]
    if args.demo_drift_for_s is not None:
        demo_args += ["--drift-for-s", str(args.demo_drift_for_s)]
    if args.demo and settings.detectors_config is None:
        # The demo model's own windows and reference, sized for its traffic (demo_detectors.yaml).
        from dataclasses import replace

        from driftline.collector.embedded.demo import DETECTORS_CONFIG

        settings = replace(settings, detectors_config=DETECTORS_CONFIG)
    if args.drain_timeout_s is not None and not args.drain_timeout_s > 0:
        raise ConfigError("--drain-timeout-s must be > 0")
    if args.broker_max_mib is not None or args.broker_check_s is not None:
        if settings.kafka_bootstrap:
            raise ConfigError("--broker-max-mib/--broker-check-s would be ignored: the broker is external (--kafka-bootstrap / "
                              "DRIFTLINE_KAFKA_BOOTSTRAP)")
        if args.broker_max_mib is not None and args.broker_max_mib < 0:
            raise ConfigError("--broker-max-mib must be >= 0 (0: never empty the embedded broker)")
        if args.broker_check_s is not None and not args.broker_check_s > 0:
            raise ConfigError("--broker-check-s must be > 0")
    alert_rules = None
    if args.alert_rules:
        alert_rules = Path(args.alert_rules).resolve()
        if not alert_rules.is_file():
            raise ConfigError(f"--alert-rules: {args.alert_rules} does not exist")
    return run_up(StackOptions(
        settings=settings, kafka_port=9092 if args.kafka_port is None else args.kafka_port,
        clickhouse_port=8123 if args.clickhouse_port is None else args.clickhouse_port,
        dashboard_port=8501 if args.dashboard_port is None else args.dashboard_port,
        dashboard=not args.no_dashboard, demo=args.demo, demo_args=tuple(demo_args), alert_rules=alert_rules,
        drain_timeout_s=120.0 if args.drain_timeout_s is None else args.drain_timeout_s, force=args.force,
        broker_max_mib=256 if args.broker_max_mib is None else args.broker_max_mib,
        broker_check_s=30.0 if args.broker_check_s is None else args.broker_check_s,
    ))


def _store(args: argparse.Namespace) -> int:
    from driftline.collector.embedded.chstore import main as chstore_main

    return chstore_main(["--data-dir", args.data_dir, "--host", args.host, "--port", str(args.port)])


def _demo(args: argparse.Namespace) -> int:
    import os

    from driftline.collector.embedded.demo import DemoOptions, run_demo
    from driftline.sdk.errors import ConfigError

    _line_buffered()  # its progress and the guide's steps, as they happen
    if not args.rate > 0:
        raise ConfigError("--rate must be > 0")
    for flag, value in (("--drift-after-s", args.drift_after_s), ("--drift-for-s", args.drift_for_s),
                        ("--duration-s", args.duration_s), ("--label-delay-s", args.label_delay_s)):
        if not value >= 0:
            raise ConfigError(f"{flag} must be >= 0")
    # The guide reads the store the demo's SDK events end up in (`driftline up` sets the URL).
    url = os.environ.get("DRIFTLINE_CLICKHOUSE_URL", "") if args.guide else ""
    return run_demo(DemoOptions(rate_per_s=args.rate, drift_after_s=args.drift_after_s, drift_for_s=args.drift_for_s,
                                duration_s=args.duration_s, label_delay_s=args.label_delay_s,
                                clickhouse_url=url, dashboard_url=args.dashboard_url))


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="start the embedded stack (broker, ClickHouse, collector, dashboard)")
    add_server_flags(p)
    p.add_argument("--demo", action="store_true", help="also run a demo model with live traffic and drift, and "
                   "(without --alert-rules) alerting with the demo rules delivered to a local receiver")
    p.add_argument("--demo-rate", type=float, help="demo predictions per second (default 50)")
    p.add_argument("--demo-drift-after-s", type=float, help="seconds before the demo injects drift (default 90)")
    p.add_argument("--demo-drift-for-s", type=float, help="seconds the demo's drift lasts before it stops "
                   "(default 180; 0: never stops)")
    p.add_argument("--kafka-port", type=int, help="embedded broker port (default 9092)")
    p.add_argument("--clickhouse-port", type=int, help="embedded ClickHouse HTTP port (default 8123)")
    p.add_argument("--dashboard-port", type=int, help="dashboard port (default 8501)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    p.add_argument("--alert-rules", help="YAML alert rules; starts the alerting service (state in DATA_DIR/alerting)")
    p.add_argument("--drain-timeout-s", type=float, help="on stop, how long to wait for the collector to store "
                   "what the embedded broker holds before saying how much is left (default 120)")
    p.add_argument("--broker-max-mib", type=int, help="when the embedded broker's memory reaches this, empty its "
                   "topics once the collector has stored and committed every record (default 256; 0: never)")
    p.add_argument("--broker-check-s", type=float, help="how often to compare the embedded broker's memory with "
                   "--broker-max-mib (default 30)")
    p.add_argument("--force", action="store_true", help="after --drain-timeout-s, stop anyway and drop what the "
                   "embedded broker still holds (without it, `up` keeps waiting; a second Ctrl-C also forces)")
    p.set_defaults(handler=_up)

    p = sub.add_parser("store", help="serve a chDB data directory over ClickHouse's HTTP interface")
    p.add_argument("--data-dir", default=".driftline/clickhouse")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123)
    p.set_defaults(handler=_store)

    p = sub.add_parser("demo", help="a scikit-learn model wrapped with the SDK, with live traffic and drift")
    d = DemoOptions()  # the defaults' one home
    p.add_argument("--rate", type=float, default=d.rate_per_s, help="predictions per second")
    p.add_argument("--drift-after-s", type=float, default=d.drift_after_s, help="seconds before a distribution shift")
    p.add_argument("--drift-for-s", type=float, default=d.drift_for_s, help="seconds the shift lasts (0: never stops)")
    p.add_argument("--dashboard-url", default="", help="the dashboard the guide links to")
    p.add_argument("--no-guide", dest="guide", action="store_false",
                   help="do not follow the run in the store (DRIFTLINE_CLICKHOUSE_URL) and print its stages")
    p.add_argument("--duration-s", type=float, default=d.duration_s, help="stop after this long (0 = until Ctrl-C)")
    p.add_argument("--label-delay-s", type=float, default=d.label_delay_s, help="delay of the ground-truth labels")
    p.set_defaults(handler=_demo)
