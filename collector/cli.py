"""The flags and settings of ``driftline collector`` (shared in part with ``driftline up``).

The command itself is assembled in ``cli/collector.py``: it plugs the detector stage, from a
package the collector does not import, into :func:`~driftline.collector.app.run_collector`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_server_flags(p: argparse.ArgumentParser) -> None:
    """The setting flags `collector` and `up` share (each also has a DRIFTLINE_* variable)."""
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


SERVER_FLAGS = ("kafka_bootstrap", "clickhouse_url", "data_dir", "metrics_port", "batch_size", "batch_timeout_s",
                "partitions", "group_id", "detectors_config", "pii_config", "pii_key_file")


def settings_from_args(args: argparse.Namespace) -> Any:
    """CollectorSettings from the shared flags (flags > env > defaults)."""
    from driftline.collector.config import CollectorSettings

    return CollectorSettings.build(
        kafka_bootstrap=args.kafka_bootstrap, clickhouse_url=args.clickhouse_url, data_dir=args.data_dir,
        metrics_port=args.metrics_port, batch_size=args.batch_size, batch_timeout_s=args.batch_timeout_s,
        partitions=args.partitions, group_id=args.group_id, detectors_config=args.detectors_config,
        pii_config=args.pii_config, pii_key_file=args.pii_key_file,
    )


def collector_settings(args: argparse.Namespace) -> Any:
    """The ``CollectorSettings`` of ``driftline collector``: from ``--settings-file`` (what ``up``
    hands its collector) or from flags > env > defaults; raises ``ConfigError`` saying what to change."""
    from driftline.collector.config import CollectorSettings
    from driftline.sdk.errors import ConfigError

    if args.settings_file:
        given = [f"--{k.replace('_', '-')}" for k in SERVER_FLAGS if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"--settings-file holds every collector setting; do not also give {', '.join(given)}")
        try:
            settings = CollectorSettings.from_json(Path(args.settings_file).read_text())
        except OSError as exc:
            raise ConfigError(f"--settings-file: {exc.strerror}: {args.settings_file}") from None
    else:
        settings = settings_from_args(args)
    if not settings.kafka_bootstrap or not settings.clickhouse_url:
        raise ConfigError("the collector needs --kafka-bootstrap and --clickhouse-url "
                          "(or DRIFTLINE_KAFKA_BOOTSTRAP and DRIFTLINE_CLICKHOUSE_URL); `driftline up` sets both")
    return settings


def add_collector_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``collector`` subcommand and its flags (read back with :func:`collector_settings`)."""
    p = sub.add_parser("collector", help="run the collector (Kafka → ClickHouse, detectors)")
    add_server_flags(p)
    p.add_argument("--settings-file", help="JSON with every collector setting (what `driftline up` hands its "
                   "collector); no other setting flag or DRIFTLINE_* variable is read then")
    return p  # type: ignore[no-any-return]
