"""Decode and validate raw Kafka records; anything that fails becomes a dead letter with a reason.

A dead letter keeps where it came from (topic, partition, offset) and why it was refused (the
field and the reason from schema validation), never the offending value in the reason text, so
the reason can be logged without leaking PII.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftline.sdk.codec import loads
from driftline.sdk.contract import BY_ROLE, validate_event
from driftline.sdk.errors import SchemaError

MAX_EVENT_BYTES = 1_048_576  # 1 MiB: larger events are refused (spaCy and ClickHouse rows stay sane)


def _expected_type(role: str) -> str | None:
    """The event type a topic role accepts (None: an unknown role accepts any)."""
    kind = BY_ROLE.get(role)
    return None if kind is None else kind.type


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # short machine-readable category: bad_json, bad_utf8, too_large, schema, wrong_topic
    detail: str  # human-readable, names the field, never contains the value
    topic: str
    partition: int
    offset: int
    value: bytes


def decode_all(values: list[bytes], *, topic: str, role: str, partition: int = -1,
               offset: int = -1) -> list[dict[str, Any] | DeadLetter]:
    """``decode`` of each value (the events of one Kafka record): parsed and validated by msgspec
    in one pass when they are all good events of the topic's type; else parsed, then validated in
    one msgspec call; otherwise one by one, for the reasons."""
    from driftline.sdk.contract.fastcheck import fast_decode_all, fast_valid_all

    expected = _expected_type(role)
    if expected is not None and all(len(v) <= MAX_EVENT_BYTES for v in values):
        exact = fast_decode_all(values, expected)
        if exact is not None:
            return exact  # type: ignore[return-value]
        try:
            events = [loads(v) for v in values]
        except ValueError:
            events = None
        if events is not None and fast_valid_all(events, expected):
            return events  # type: ignore[return-value]
    return [decode(v, topic=topic, role=role, partition=partition, offset=offset) for v in values]


def decode(value: bytes | None, *, topic: str, role: str, partition: int = -1, offset: int = -1) -> dict[str, Any] | DeadLetter:
    """Return the validated event, or a :class:`DeadLetter` saying why not."""

    def dead(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(reason, detail, topic, partition, offset, value or b"")

    if value is None:
        return dead("empty", "record has no value")
    if len(value) > MAX_EVENT_BYTES:
        return dead("too_large", f"event is {len(value)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        event = loads(value)  # orjson checks the UTF-8 itself: no decoded copy on the way
    except ValueError:
        try:  # refused: say why, in terms of the text
            event = loads(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return dead("bad_utf8", f"invalid UTF-8 at byte {exc.start}")
        except ValueError as exc:
            msg = getattr(exc, "msg", "invalid JSON")
            pos = getattr(exc, "pos", "?")
            return dead("bad_json", f"{msg} at character {pos}")
    try:
        validate_event(event)
    except SchemaError as exc:
        return dead("schema", str(exc))
    expected = _expected_type(role)
    if expected is not None and event["type"] != expected:
        return dead("wrong_topic", f"type: a {event['type']} event on the {role} topic")
    return event
