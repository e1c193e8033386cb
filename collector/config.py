"""Server-side settings (collector, `driftline up`): typed, frozen, built once at the entry point."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from driftline.sdk.contract import Topics
from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.collector")

# The collector's own names: DRIFTLINE_BATCH_SIZE is the SDK's (events per export batch, 1,000),
# a different quantity from the collector's events per ClickHouse insert (25,000).
ENV_VARS = {
    "DRIFTLINE_KAFKA_BOOTSTRAP": "kafka_bootstrap",
    "DRIFTLINE_CLICKHOUSE_URL": "clickhouse_url",
    "DRIFTLINE_DATA_DIR": "data_dir",
    "DRIFTLINE_GROUP_ID": "group_id",
    "DRIFTLINE_COLLECTOR_BATCH_SIZE": "batch_size",
    "DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S": "batch_timeout_s",
    "DRIFTLINE_METRICS_PORT": "metrics_port",
    "DRIFTLINE_METRICS_HOST": "metrics_host",
    "DRIFTLINE_DETECTORS_CONFIG": "detectors_config",
    "DRIFTLINE_PII_CONFIG": "pii_config",
    "DRIFTLINE_PII_KEY_FILE": "pii_key_file",
    "DRIFTLINE_PARTITIONS": "partitions",
    "DRIFTLINE_SESSION_TIMEOUT_S": "session_timeout_s",
    "DRIFTLINE_DEADLETTER_RETENTION_H": "deadletter_retention_h",
    "DRIFTLINE_FEATURE_DETAIL_TOP": "feature_detail_top",
    "DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB": "detector_memory_budget_mb",
    "DRIFTLINE_DETECTOR_PARK_AFTER_S": "detector_park_after_s",
    "DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S": "detector_held_ack_after_s",
    "DRIFTLINE_DETECTOR_STATE_RETRY_S": "detector_state_retry_s",
    "DRIFTLINE_DETECTOR_SAVE_INTERVAL_S": "detector_save_interval_s",
    "DRIFTLINE_REFERENCE_POLL_S": "reference_poll_s",
    "DRIFTLINE_ROLLUP_AUDIT_S": "rollup_audit_s",
    "DRIFTLINE_FEATURE_ROLL_S": "feature_roll_s",
    "DRIFTLINE_FEATURE_ROLL_AFTER_S": "feature_roll_after_s",
    "DRIFTLINE_MEMORY_PROBE_DIR": "memory_probe_dir",
    "DRIFTLINE_MEMORY_PROBE_INTERVAL_S": "memory_probe_interval_s",
    "DRIFTLINE_MEMORY_PROBE_TRACEMALLOC_FRAMES": "memory_probe_tracemalloc_frames",
}


@dataclass(frozen=True)
class CollectorSettings:
    """Settings of the collector. Empty ``kafka_bootstrap``/``clickhouse_url`` mean "embedded"
    for ``driftline up``; the collector itself needs both."""

    kafka_bootstrap: str = ""
    clickhouse_url: str = ""
    data_dir: Path = field(default_factory=lambda: Path(".driftline"))
    topics: Topics = field(default_factory=Topics)
    group_id: str = "driftline-collector"
    # Events per insert, and Kafka records per consumed batch. ClickHouse's views cost ~55 ms per
    # insert whatever its size, so big blocks matter: 25k is ~1.2x the throughput of 10k
    # (bench/bench_pipeline.py). A batch that does not fill within batch_timeout_s is written as it is.
    batch_size: int = 25_000
    batch_timeout_s: float = 0.5
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    partitions: int = 4
    session_timeout_s: float = 10.0
    detectors_config: Path | None = None
    pii_config: Path | None = None
    pii_key_file: Path | None = None
    # Dead letters are stored raw (unscrubbed): they expire after this many hours (the dead-letter
    # topic's retention.ms, topics.deadletter_configs). Event topics keep the broker's default.
    deadletter_retention_h: float = 24.0
    # Per-feature drift gauges on /metrics for this many (model, version, detector, feature,
    # segment) groups, drifting ones first by impact (each group is ~3 series per statistic);
    # per-model health series are always there and every value is in driftline.drift_metrics.
    # 30 keeps 1,000 models under ~10k series; raise it to see every feature of a small fleet.
    feature_detail_top: int = 30
    # The detectors' memory, all models together (detectors/budget.py): each model's state
    # (histograms, references; ~0.5 MiB at 20 features, estimated) and the pending joins (labels,
    # shadows, outcomes awaited; ~900 bytes each). Over it, idle models are unloaded first (their
    # state is saved; their next event loads it), then pending joins evicted, oldest first from
    # the models holding most; both counted.
    detector_memory_budget_mb: float = 512.0
    # A model with no event for this long may be unloaded when the budget is over.
    detector_park_after_s: float = 300.0
    # How long a failed read or write of the detectors' saved state (driftline.detector_state) is
    # retried before the chunk is held (a read) or the save is left for the next one (a write).
    detector_state_retry_s: float = 30.0
    # While batches keep coming, the detectors' drift rows and state are written at most this often
    # (and whenever the collector falls idle, stops or hands partitions over); the Kafka offsets of
    # the events observed meanwhile are committed after that write, so a crash reads them again and
    # nothing is lost. A save compares every histogram the events touched: ~9 % of the collector's
    # CPU at 1,000 features when made after every chunk. 0 saves after every chunk.
    detector_save_interval_s: float = 5.0
    # Stored events whose models' detector state cannot be loaded (the state store away) are held
    # for the detectors and their Kafka offsets not committed, so a crash reads them again. After
    # this long a hold no longer keeps offsets back (neither the broker's retention nor `up`'s stop
    # waits on the outage): the events are still observed if the state loads before a stop or a
    # rebalance, else given up and counted (driftline_detector_events_unobserved_total).
    detector_held_ack_after_s: float = 120.0
    # How often references stored while the collector runs (`driftline reference set`) are picked
    # up: one light query of when each was saved, the profile loaded only when it changed.
    reference_poll_s: float = 10.0
    # How often the collector checks the dashboard's rollups against the raw rows of the last
    # hours (collector/store/rollup_audit.py: an insert whose views did not all run shows as
    # driftline_rollup_rows_missing and a warning); 0 turns the audit off.
    rollup_audit_s: float = 600.0
    # The feature rollup is rolled from the raw rows once an hour has been closed for
    # feature_roll_after_s, checked every feature_roll_s (collector/store/feature_rolls.py); hours not
    # rolled yet are read raw by the dashboard. 0 turns the roller off (another collector rolls).
    feature_roll_s: float = 60.0
    feature_roll_after_s: float = 300.0
    # Diagnostics, off by default (collector/memprobe.py): a directory turns on a memory sample
    # (RSS, malloc's arenas, gc objects by type) every interval; frames > 0 adds tracemalloc
    # snapshots there too (slower, and tracemalloc's own traces add to RSS).
    memory_probe_dir: Path | None = None
    memory_probe_interval_s: float = 300.0
    memory_probe_tracemalloc_frames: int = 0

    def __post_init__(self) -> None:
        if not self.detector_memory_budget_mb > 0:
            raise ConfigError("detector_memory_budget_mb must be > 0 (DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB)")
        if not self.detector_park_after_s >= 0:
            raise ConfigError("detector_park_after_s must be >= 0 (DRIFTLINE_DETECTOR_PARK_AFTER_S)")
        if not self.detector_state_retry_s >= 0:
            raise ConfigError("detector_state_retry_s must be >= 0 (DRIFTLINE_DETECTOR_STATE_RETRY_S)")
        if not self.detector_save_interval_s >= 0:
            raise ConfigError("detector_save_interval_s must be >= 0 (DRIFTLINE_DETECTOR_SAVE_INTERVAL_S)")
        if not self.detector_held_ack_after_s > 0:
            raise ConfigError("detector_held_ack_after_s must be > 0 (DRIFTLINE_DETECTOR_HELD_ACK_AFTER_S)")
        if not self.rollup_audit_s >= 0:
            raise ConfigError("rollup_audit_s must be >= 0 (DRIFTLINE_ROLLUP_AUDIT_S; 0 turns the audit off)")
        if not self.feature_roll_s >= 0:
            raise ConfigError("feature_roll_s must be >= 0 (DRIFTLINE_FEATURE_ROLL_S; 0 turns the roller off)")
        if not self.feature_roll_after_s >= 0:
            raise ConfigError("feature_roll_after_s must be >= 0 (DRIFTLINE_FEATURE_ROLL_AFTER_S)")
        if not self.reference_poll_s > 0:
            raise ConfigError("reference_poll_s must be > 0 (DRIFTLINE_REFERENCE_POLL_S)")
        if not self.memory_probe_interval_s > 0:
            raise ConfigError("memory_probe_interval_s must be > 0 (DRIFTLINE_MEMORY_PROBE_INTERVAL_S)")
        if self.memory_probe_tracemalloc_frames < 0:
            raise ConfigError("memory_probe_tracemalloc_frames must be >= 0 "
                              "(DRIFTLINE_MEMORY_PROBE_TRACEMALLOC_FRAMES)")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1 (DRIFTLINE_COLLECTOR_BATCH_SIZE / --batch-size)")
        if not self.batch_timeout_s > 0:
            raise ConfigError("batch_timeout_s must be > 0 (DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S / --batch-timeout-s)")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port {self.metrics_port} is not a TCP port (DRIFTLINE_METRICS_PORT)")
        if self.feature_detail_top < 0:
            raise ConfigError("feature_detail_top must be >= 0 (DRIFTLINE_FEATURE_DETAIL_TOP)")
        if self.partitions < 1:
            raise ConfigError("partitions must be >= 1 (DRIFTLINE_PARTITIONS)")
        if not 0 < self.deadletter_retention_h <= 24 * 365:
            raise ConfigError("deadletter_retention_h must be > 0 and at most a year "
                              "(DRIFTLINE_DEADLETTER_RETENTION_H)")
        if self.kafka_bootstrap and any(":" not in h for h in self.kafka_bootstrap.split(",")):
            raise ConfigError(f"kafka_bootstrap {self.kafka_bootstrap!r} must be host:port[,host:port] "
                              "(DRIFTLINE_KAFKA_BOOTSTRAP / --kafka-bootstrap)")
        if self.clickhouse_url:
            from driftline.collector.store.client import parse_url

            parse_url(self.clickhouse_url)
        for name in ("detectors_config", "pii_config", "pii_key_file"):
            path = getattr(self, name)
            if path is None:
                continue
            ok = Path(path).exists() if name == "detectors_config" else Path(path).is_file()  # a dir of YAMLs
            if not ok:
                raise ConfigError(f"{name}: {path} does not exist")

    def to_json(self) -> str:
        """The whole settings, for a child process (``driftline collector --settings-file``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Topics):
                value = {t.name: getattr(value, t.name) for t in fields(Topics)}
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return json.dumps(out, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CollectorSettings:
        """The inverse of ``to_json``; unknown keys are errors (no environment is read)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"settings file is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("settings file must hold a JSON object")
        topics = data.pop("topics", None)
        if topics is not None:
            try:
                data["topics"] = Topics(**topics)
            except TypeError as exc:
                raise ConfigError(f"settings file: topics: {exc}") from None
        return cls.build(env={}, **data)

    def public(self) -> dict[str, str]:
        """The effective settings as strings, with the ClickHouse password hidden (for logs and
        the ``driftline_collector_settings_info`` metric)."""
        from driftline.collector.store.client import redact_url

        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "clickhouse_url" and value:
                value = redact_url(value)
            elif isinstance(value, Topics):
                value = ",".join(getattr(value, t.name) for t in fields(Topics))
            out[f.name] = "" if value is None else str(value)
        return out

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **flags: Any) -> CollectorSettings:
        """Flags win over ``DRIFTLINE_*`` environment variables, which win over defaults."""
        env = os.environ if env is None else env
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if env.get(var):
                values[name] = env[var]
        _note_old_names(env, values)
        if env.get("DRIFTLINE_TOPIC_PREFIX"):
            prefix = env["DRIFTLINE_TOPIC_PREFIX"]
            values["topics"] = Topics.with_prefix(prefix)
        values.update({k: v for k, v in flags.items() if v is not None})
        unknown = set(values) - set(types)
        if unknown:
            raise ConfigError(f"unknown collector setting(s): {', '.join(sorted(unknown))}")
        for name, value in list(values.items()):
            kind = str(types[name])
            try:
                if "int" in kind and not isinstance(value, int):
                    values[name] = int(value)
                elif "float" in kind and not isinstance(value, float):
                    values[name] = float(value)
                elif "Path" in kind and value is not None and not isinstance(value, Path):
                    values[name] = Path(value)
            except ValueError:
                source = "" if name in flags else next((f" ({var})" for var, n in ENV_VARS.items()
                                                        if n == name and env.get(var)), "")
                raise ConfigError(f"{name}={value!r}{source} is not a valid {kind}") from None
        return cls(**values)


def _note_old_names(env: Mapping[str, str], values: dict[str, Any]) -> None:
    """Say once, at start-up, when only the pre-rename variables are set."""
    if env.get("DRIFTLINE_BATCH_SIZE") and not env.get("DRIFTLINE_COLLECTOR_BATCH_SIZE"):
        # Not reinterpreted: in a shared environment it is meant for the SDK processes.
        logger.warning("DRIFTLINE_BATCH_SIZE is the SDK's export batch size; the collector does not read it. "
                       "Set DRIFTLINE_COLLECTOR_BATCH_SIZE (or --batch-size) for events per ClickHouse insert.")
    if env.get("DRIFTLINE_BATCH_TIMEOUT_S") and not env.get("DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S"):
        # Only the collector ever had this one, so it keeps working under its old name.
        values.setdefault("batch_timeout_s", env["DRIFTLINE_BATCH_TIMEOUT_S"])
        logger.warning("DRIFTLINE_BATCH_TIMEOUT_S is now DRIFTLINE_COLLECTOR_BATCH_TIMEOUT_S; "
                       "the old name is read for now, rename it.")
