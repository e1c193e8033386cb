"""SDK settings: typed, frozen, built once at the entry point (flags / ``DRIFTLINE_*`` env).

Nothing here reads the environment at import time; :meth:`SdkSettings.from_env` is called by
``Monitor`` when it is constructed without ``settings`` (or a ``client`` to take them from), by
``Client``, or by the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from driftline.sdk.contract import Topics
from driftline.sdk.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


@dataclass(frozen=True)
class SdkSettings:
    """Settings of the producer side (SDK and sidecar).

    ``DRIFTLINE_KAFKA_BOOTSTRAP``   Kafka bootstrap servers (default 127.0.0.1:9092, `driftline up`)
    ``DRIFTLINE_TOPIC_PREFIX``      prefix of the topic names (default ``driftline``)
    ``DRIFTLINE_QUEUE_SIZE``        bounded queue of the exporter (default 100000 events)
    ``DRIFTLINE_BATCH_SIZE``        events per export batch (default 1000)
    ``DRIFTLINE_FLUSH_INTERVAL_S``  longest wait before a partial batch goes out (default 0.2)
    ``DRIFTLINE_DENYLIST``          comma-separated extra field names masked before export
    """

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    topics: Topics = field(default_factory=Topics)
    queue_size: int = 100_000
    batch_size: int = 1_000
    flush_interval_s: float = 0.2
    compression: str | None = "auto"
    denylist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.kafka_bootstrap or any(":" not in h for h in self.kafka_bootstrap.split(",")):
            raise ConfigError(
                f"kafka_bootstrap {self.kafka_bootstrap!r} must be host:port[,host:port]; "
                "set DRIFTLINE_KAFKA_BOOTSTRAP or --kafka-bootstrap"
            )
        if self.queue_size < 1:
            raise ConfigError("queue_size must be >= 1 (DRIFTLINE_QUEUE_SIZE)")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1 (DRIFTLINE_BATCH_SIZE)")
        if not self.flush_interval_s > 0:
            raise ConfigError("flush_interval_s must be > 0 (DRIFTLINE_FLUSH_INTERVAL_S)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SdkSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("DRIFTLINE_KAFKA_BOOTSTRAP"):
            values["kafka_bootstrap"] = env["DRIFTLINE_KAFKA_BOOTSTRAP"]
        prefix = env.get("DRIFTLINE_TOPIC_PREFIX")
        if prefix:
            values["topics"] = Topics.with_prefix(prefix)
        for key, name, conv in (
            ("DRIFTLINE_QUEUE_SIZE", "queue_size", int),
            ("DRIFTLINE_BATCH_SIZE", "batch_size", int),
            ("DRIFTLINE_FLUSH_INTERVAL_S", "flush_interval_s", float),
        ):
            if env.get(key):
                try:
                    values[name] = conv(env[key])
                except ValueError:
                    raise ConfigError(f"{key}={env[key]!r} is not a valid {conv.__name__}") from None
        if env.get("DRIFTLINE_DENYLIST"):
            values["denylist"] = tuple(x.strip() for x in env["DRIFTLINE_DENYLIST"].split(",") if x.strip())
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings
