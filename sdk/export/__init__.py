"""Export: how events leave the process.

``batch``   BatchExporter: the bounded queue and the one worker thread between the hot path and a
            transport (drops counted by reason, flush/shutdown deadlines, fork, exit flush)
``client``  Client: one BatchExporter and transport per process, shared by every Monitor
``kafka``   KafkaExporter: the Kafka transport (kafka-python, acks=all, compressed), also used
            for the collector's dead letters
``memory``  InMemoryExporter, so users can test their own code

``KafkaExporter`` is imported on first use: it pulls in kafka-python.
"""

from __future__ import annotations

from driftline.sdk.export.batch import DROP_REASONS, BatchExporter, Exporter, ExporterStats, ExportResult, Record
from driftline.sdk.export.client import Client, default_client
from driftline.sdk.export.memory import InMemoryExporter

__all__ = [
    "DROP_REASONS",
    "BatchExporter",
    "Client",
    "ExportResult",
    "Exporter",
    "ExporterStats",
    "InMemoryExporter",
    "KafkaExporter",
    "Record",
    "default_client",
]


def __getattr__(name: str) -> object:
    if name == "KafkaExporter":
        from driftline.sdk.export.kafka import KafkaExporter

        return KafkaExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
