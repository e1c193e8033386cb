"""An in-memory exporter so users can test their own code (like OTel's InMemorySpanExporter).

>>> from driftline.sdk import Monitor, InMemoryExporter
>>> sink = InMemoryExporter()
>>> m = Monitor(model="churn", version="1", exporter=sink)
>>> pid = m.log(features={"age": 41}, prediction=0.7)
>>> m.flush(1.0)
True
>>> [e["event_id"] for e in sink.events()] == [pid]
True
"""

from __future__ import annotations

import json
import threading
from typing import Any, Sequence

from driftline.sdk.export.batch import ExportResult, Record


class InMemoryExporter:
    """Keeps every exported record in memory. Thread-safe; ``fail_next(n)`` simulates outages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._fail_batches = 0

    def export(self, records: Sequence[Record], timeout_s: float) -> ExportResult:
        with self._lock:
            if self._fail_batches:
                self._fail_batches -= 1
                return ExportResult(retry=tuple(range(len(records))))
            self._records.extend(records)
        return ExportResult()

    def shutdown(self, timeout_s: float) -> None:
        return None

    def fail_next(self, batches: int) -> None:
        """Make the next ``batches`` exports fail transiently (they are retried)."""
        with self._lock:
            self._fail_batches = batches

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        """Decoded events, optionally only one ``type`` (prediction, label, outcome)."""
        decoded = [json.loads(r.value) for r in self.records()]
        return [e for e in decoded if type is None or e["type"] == type]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
