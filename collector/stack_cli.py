"""CLI: ``driftline up``, ``driftline store``, ``driftline demo``; the flags and settings of
``driftline collector``, whose command is assembled in ``cli/collector.py`` (it plugs in the
detector stage, from a package the collector does not import)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kafka-bootstrap", help="host:port of Kafka (env DRIFTLINE_KAFKA_BOOTSTRAP); "
                   "unset with `up` = embedded broker")
    p.add_argument("--clickhouse-url", help="http://user:pass@host:8123 (env DRIFTLINE_CLICKHOUSE_URL); "
                   "unset with `up` = embedded store")
    p.add_argument("--data-dir", help="where embedded data and logs live (env DRIFTLINE_DATA_DIR, default .driftline)")
    p.add_argument("--metrics-port", type=int, help="collector Prometheus port (default 9464)")
    p.add_argument("--batch-size", type=int, help="collector: events per ClickHouse insert "
                   "(env DRIFTLINE_COLLECTOR_BATCH_SIZE, default 25000; not the SDK's DRIFTLINE_BATCH_SIZE)")
    p.add_argument("--batch-timeout-s", type=float, help="collector: longest wait for an insert batch to fill "
                   "(env DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S, default 0.5)")
    p.add_argument("--partitions", type=int, help="partitions of the topics driftline creates (default 4)")
    p.add_argument("--group-id", help="Kafka consumer group of the collector")
    p.add_argument("--detectors-config", help="YAML with per-model detector settings")
    p.add_argument("--pii-config", help="YAML with PII scrubbing policies")
    p.add_argument("--pii-key-file", help="file holding the HMAC key for hashed fields")


_SERVER_FLAGS = ("kafka_bootstrap", "clickhouse_url", "data_dir", "metrics_port", "batch_size", "batch_timeout_s",
                 "partitions", "group_id", "detectors_config", "pii_config", "pii_key_file")


def _settings(args: argparse.Namespace) -> Any:
    from driftline.collector.config import CollectorSettings

    return CollectorSettings.build(
        kafka_bootstrap=args.kafka_bootstrap, clickhouse_url=args.clickhouse_url, data_dir=args.data_dir,
        metrics_port=args.metrics_port, batch_size=args.batch_size, batch_timeout_s=args.batch_timeout_s,
        partitions=args.partitions, group_id=args.group_id, detectors_config=args.detectors_config,
        pii_config=args.pii_config, pii_key_file=args.pii_key_file,
    )


def _up(args: argparse.Namespace) -> int:
    from driftline.collector.stack import StackOptions, run_up
    from driftline.sdk.errors import ConfigError

    settings = _settings(args)
    # A flag that would be ignored is an error, not a silence.
    ignored = [
        ("--kafka-port", args.kafka_port, settings.kafka_bootstrap, "the broker is external (--kafka-bootstrap / "
         "DRIFTLINE_KAFKA_BOOTSTRAP)"),
        ("--clickhouse-port", args.clickhouse_port, settings.clickhouse_url, "the store is external "
         "(--clickhouse-url / DRIFTLINE_CLICKHOUSE_URL)"),
        ("--dashboard-port", args.dashboard_port, args.no_dashboard, "--no-dashboard is given"),
        ("--demo-rate", args.demo_rate, not args.demo, "--demo is not given"),
        ("--demo-drift-after-s", args.demo_drift_after_s, not args.demo, "--demo is not given"),
    ]
    for flag, value, condition, why in ignored:
        if value is not None and condition:
            raise ConfigError(f"{flag} would be ignored: {why}")
    demo_args: list[str] = []
    if args.demo_rate is not None:
        demo_args += ["--rate", str(args.demo_rate)]
    if args.demo_drift_after_s is not None:
        demo_args += ["--drift-after-s", str(args.demo_drift_after_s)]
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


def collector_settings(args: argparse.Namespace) -> Any:
    """The ``CollectorSettings`` of ``driftline collector``: from ``--settings-file`` (what ``up``
    hands its collector) or from flags > env > defaults; raises ``ConfigError`` saying what to change."""
    from driftline.collector.config import CollectorSettings
    from driftline.sdk.errors import ConfigError

    if args.settings_file:
        given = [f"--{k.replace('_', '-')}" for k in _SERVER_FLAGS if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"--settings-file holds every collector setting; do not also give {', '.join(given)}")
        try:
            settings = CollectorSettings.from_json(Path(args.settings_file).read_text())
        except OSError as exc:
            raise ConfigError(f"--settings-file: {exc.strerror}: {args.settings_file}") from None
    else:
        settings = _settings(args)
    if not settings.kafka_bootstrap or not settings.clickhouse_url:
        raise ConfigError("the collector needs --kafka-bootstrap and --clickhouse-url "
                          "(or DRIFTLINE_KAFKA_BOOTSTRAP and DRIFTLINE_CLICKHOUSE_URL); `driftline up` sets both")
    return settings


def _store(args: argparse.Namespace) -> int:
    from driftline.collector.chstore import main as chstore_main

    return chstore_main(["--data-dir", args.data_dir, "--host", args.host, "--port", str(args.port)])


def _demo(args: argparse.Namespace) -> int:
    from driftline.collector.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(rate_per_s=args.rate, drift_after_s=args.drift_after_s,
                                duration_s=args.duration_s, label_delay_s=args.label_delay_s))


def add_collector_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``collector`` subcommand and its flags (read back with :func:`collector_settings`)."""
    p = sub.add_parser("collector", help="run the collector (Kafka → ClickHouse, detectors)")
    _server_flags(p)
    p.add_argument("--settings-file", help="JSON with every collector setting (what `driftline up` hands its "
                   "collector); no other setting flag or DRIFTLINE_* variable is read then")
    return p  # type: ignore[no-any-return]


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="start the embedded stack (broker, ClickHouse, collector, dashboard)")
    _server_flags(p)
    p.add_argument("--demo", action="store_true", help="also run a demo model with live traffic and drift")
    p.add_argument("--demo-rate", type=float, help="demo predictions per second (default 50)")
    p.add_argument("--demo-drift-after-s", type=float, help="seconds before the demo injects drift (default 60)")
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
    p.add_argument("--rate", type=float, default=50.0, help="predictions per second")
    p.add_argument("--drift-after-s", type=float, default=60.0, help="seconds before a distribution shift")
    p.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")
    p.add_argument("--label-delay-s", type=float, default=5.0, help="delay of the ground-truth labels")
    p.set_defaults(handler=_demo)
