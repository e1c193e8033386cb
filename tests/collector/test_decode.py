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


def test_decode_all_matches_decoding_each_event() -> None:
    from driftline.collector.decode import decode_all

    good = [dumps({**GOOD, "event_id": f"0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f{i:02d}"}) for i in range(5)]
    mixes = [
        good,  # the one-call path
        good[:2] + [b'{"model": "secret"'] + good[2:],
        good[:2] + [dumps({**GOOD, "features": {"x": "a", "y": [1]}})],
        good[:1] + [dumps({**GOOD, "type": "label"})],  # wrong type for the topic: refused, not validated as one
        good[:1] + [dumps({k: v for k, v in GOOD.items() if k != "type"})],  # no type: the Struct would not notice
        good[:1] + [dumps({**GOOD, "pad": "x" * MAX_EVENT_BYTES})],
    ]
    for values in mixes:
        assert decode_all(values, topic="t", role="predictions", offset=3) == [
            decode(v, topic="t", role="predictions", offset=3) for v in values]
    outcome = dumps({"schema_version": 1, "type": "outcome", "event_id": GOOD["event_id"], "model": "m",
                     "timestamp": "2026-03-01T10:00:00Z", "name": "click", "value": 1})  # no ids: refused
    assert decode_all([outcome], topic="t", role="outcomes") == [decode(outcome, topic="t", role="outcomes")]
    assert isinstance(decode_all([outcome], topic="t", role="outcomes")[0], DeadLetter)
