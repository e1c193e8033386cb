"""driftline SDK: log predictions, labels and outcomes from a model process.

>>> from driftline.sdk import Monitor
>>> monitor = Monitor(model="churn", version="3")          # doctest: +SKIP
>>> pid = monitor.log(features={"age": 41}, prediction=0.73)  # doctest: +SKIP

This package must stay light: no numpy, pandas or server-side dependencies are imported here.
"""

from __future__ import annotations

from driftline.sdk.config import SdkSettings
from driftline.sdk.contract import SCHEMA_VERSION, Topics, validate_event
from driftline.sdk.errors import ConfigError, DriftlineError, SchemaError
from driftline.sdk.export import BatchExporter, Client, ExporterStats, ExportResult, InMemoryExporter, Record
from driftline.sdk.ids import uuid7
from driftline.sdk.monitor import Monitor

__all__ = [
    "SCHEMA_VERSION",
    "BatchExporter",
    "Client",
    "ConfigError",
    "DriftlineError",
    "ExportResult",
    "ExporterStats",
    "InMemoryExporter",
    "KafkaExporter",
    "Monitor",
    "Record",
    "SchemaError",
    "SdkSettings",
    "Topics",
    "uuid7",
    "validate_event",
]


def __getattr__(name: str) -> object:
    # KafkaExporter pulls in kafka-python; import it only when asked for.
    if name == "KafkaExporter":
        from driftline.sdk.export.kafka import KafkaExporter

        return KafkaExporter
    raise AttributeError(name)
