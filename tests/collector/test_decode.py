"""Decoding one event: the reason a refused record carries, without its value."""

from __future__ import annotations

import pytest

from driftline.collector.decode import MAX_EVENT_BYTES, DeadLetter, decode
from driftline.sdk.codec import dumps

GOOD = {"schema_version": 1, "type": "prediction", "event_id": "0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f80",
        "timestamp": "2026-03-01T10:00:00Z", "model": "m", "features": {"x": 1.5}, "prediction": 1}


@pytest.mark.parametrize("value, reason", [
    (b'{"model": "\xff\xfe secret"}', "bad_utf8"),
    (b'{"model": "secret"', "bad_json"),
    (b"", "bad_json"),
    (dumps({**GOOD, "features": {"x": [1]}}), "schema"),
    (dumps({**GOOD, "type": "label"}), "schema"),
    (dumps({**GOOD, "pad": "x" * MAX_EVENT_BYTES}), "too_large"),
    (None, "empty"),
])
def test_refusals_say_why_without_the_value(value: bytes | None, reason: str) -> None:
    result = decode(value, topic="t", role="predictions", partition=1, offset=7)
    assert isinstance(result, DeadLetter)
    assert result.reason == reason and (result.partition, result.offset) == (1, 7)
    assert "secret" not in result.detail


def test_a_valid_event_decodes_and_a_wrong_topic_is_refused() -> None:
    assert decode(dumps(GOOD), topic="t", role="predictions") == GOOD
    wrong = decode(dumps(GOOD), topic="t", role="labels")
    assert isinstance(wrong, DeadLetter) and wrong.reason == "wrong_topic"
