"""Batch framing of events in Kafka records: what the producers write and the collector reads.

One Kafka record carries many events as newline-delimited JSON and says so in the header
``driftline-format: ndjson``; a record without that header holds one JSON event, so any producer
can still write single events.

>>> class R:
...     def __init__(self, value): self.topic, self.key, self.value = "t", b"k", value
>>> [(topic, indexes, value, headers) for topic, _, indexes, value, headers in pack([R(b"{}"), R(b"[]")], 1024)]
[('t', [0, 1], b'{}\\n[]', [('driftline-format', b'ndjson')])]
>>> unpack(b'{}\\n[]', [BATCH_HEADER])
[b'{}', b'[]']
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

BATCH_HEADER = ("driftline-format", b"ndjson")

Chunk = tuple[str, bytes, list[int], bytes, list[tuple[str, bytes]]]


class Framed(Protocol):
    """What :func:`pack` reads of a record (the SDK's ``Record``)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes: ...


def pack(records: Sequence[Framed], max_bytes: int) -> list[Chunk]:
    """Group records by (topic, key) into newline-delimited batches of at most ``max_bytes``.

    Returns ``(topic, key, indexes into records, value, headers)`` per Kafka record. One Kafka
    record then carries many events: kafka-python's per-record cost (tens of microseconds) is paid
    once per batch, not once per event. A lone event goes out as is, without the header.
    """
    groups: dict[tuple[str, bytes], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.topic, r.key), []).append(i)
    chunks = []
    for (topic, key), indexes in groups.items():
        current: list[int] = []
        size = 0
        for i in indexes:
            n = len(records[i].value) + 1
            if current and size + n > max_bytes:
                chunks.append(_chunk(records, topic, key, current))
                current, size = [], 0
            current.append(i)
            size += n
        if current:
            chunks.append(_chunk(records, topic, key, current))
    return chunks


def unpack(value: bytes, headers: Any = ()) -> list[bytes]:
    """The events in one Kafka record: one per line for a batch record, else the value itself."""
    items = headers.items() if hasattr(headers, "items") else (headers or ())
    for name, header_value in items:
        if name == BATCH_HEADER[0] and bytes(header_value) == BATCH_HEADER[1]:
            return value.split(b"\n")
    return [value]


def _chunk(records: Sequence[Framed], topic: str, key: bytes, indexes: list[int]) -> Chunk:
    if len(indexes) == 1:
        return topic, key, indexes, records[indexes[0]].value, []
    return topic, key, indexes, b"\n".join(records[i].value for i in indexes), [BATCH_HEADER]
