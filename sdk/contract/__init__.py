"""The event contract between producers (SDK, sidecar) and the server side, in one place.

* :mod:`.kinds` -- the event types and, for each, its topic, collector role and store table;
  the :class:`Topics` names.
* :mod:`.schema` and :mod:`.fastcheck` -- schema v1 and its msgspec fast path.
* :mod:`.timestamps` -- the ``timestamp`` field, formatted and parsed.
* :mod:`.wire` -- how events are framed in Kafka records.

This package sits at the bottom of the import graph: it imports the standard library and
:mod:`driftline.sdk.errors` only (msgspec lazily, as an optional accelerator), so the SDK, the
collector, the detectors and the dashboard can all depend on it and on nothing of each other's.
"""

from __future__ import annotations

from driftline.sdk.contract.kinds import (
    BY_ROLE,
    BY_TYPE,
    EVENT_KINDS,
    LABEL,
    OUTCOME,
    PREDICTION,
    EventKind,
    Topics,
)
from driftline.sdk.contract.schema import SCHEMA_VERSION, validate_event
from driftline.sdk.contract.timestamps import format_timestamp, parse_timestamp, timestamp_seconds
from driftline.sdk.contract.wire import BATCH_HEADER, pack, unpack

__all__ = [
    "BATCH_HEADER",
    "BY_ROLE",
    "BY_TYPE",
    "EVENT_KINDS",
    "LABEL",
    "OUTCOME",
    "PREDICTION",
    "SCHEMA_VERSION",
    "EventKind",
    "Topics",
    "format_timestamp",
    "pack",
    "parse_timestamp",
    "timestamp_seconds",
    "unpack",
    "validate_event",
]
