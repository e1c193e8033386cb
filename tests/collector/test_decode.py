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


def _same(a: object, b: object) -> bool:
    """Equal with the same types all the way down (``1 == 1.0`` is not enough here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


_ID = '"event_id":"0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f80","timestamp":"2026-03-01T10:00:00.5Z","model":"m"'
_P = '{"schema_version":1,"type":"prediction",' + _ID
_L = '{"schema_version":1,"type":"label",' + _ID + ',"prediction_id":"0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f81"'
# Events as any client may write them (not only as driftline's SDK does): the one-pass path takes them.
_TAKEN = [
    _P + "}",
    _P + ',"model_version":"3","variant":"b","request_id":"r","features":{"age":41,"plan":"pro","on":true,'
         '"coupon":null,"x":-0.0,"y":1E2,"z":5e-324,"w":-1.7e308},"prediction":{"yes":0.8,"no":1},'
         '"latency_ms":3,"status":"error","error":"boom","tags":{"region":"eu"}}',
    _P + ',"features":{"a":9223372036854775807,"b":-9223372036854775808,"\\u00e9":1,"\u2603":2.5}}',
    _P + ',"features":{"a":1,"a":2.5},"model_version":null,"latency_ms":0}',  # a repeated key: the last one
    *(_P + f',"prediction":{p}}}' for p in ('1', '0.5', '"cat"', 'true', 'null', '[1,2]', '[[0.1,0.9]]', '{"a":1}')),
    _L + ',"label":1}', _L + ',"label":"cat","model_version":null,"tags":{}}', _L + ',"label":{"a":0.25}}',
]
# Valid or not, these are left to the slower paths (which read them as before).
_LEFT = [
    _P + ',"features":{"a":9223372036854775808}}', _P + ',"features":{"a":-9223372036854775809}}',
    _P + ',"features":{"a":1000000000000000000000000000000}}', _P + ',"latency_ms":18446744073709551616}',
    _P + ',"features":{"a":1e400}}', _P + ',"features":{"a":NaN}}', _P + ',"prediction":Infinity}',
    _P + ',"features":{"a":"\\ud800"}}', _P + ',"features":{"a":[1]}}', _P + ',"pad":1}',
    _P.replace('"schema_version":1', '"schema_version":1.0') + "}", _P.replace('"prediction"', '"label"') + "}",
    _P.replace('"type":"prediction",', "") + "}", _P + ',"latency_ms":true}', _P + ',"latency_ms":-1}',
    '{"type":"prediction","schema_version":1,' + _ID + ',"features":{"":1}}', _P + "}x", _P + "}{}",
]


@pytest.mark.parametrize("raw", _TAKEN)
def test_the_one_pass_decoder_gives_what_orjson_gives(raw: str) -> None:
    import orjson

    from driftline.collector.decode import decode_all
    from driftline.sdk import validate_event
    from driftline.sdk.contract.fastcheck import fast_decode_all

    kind = "label" if '"type":"label"' in raw else "prediction"
    got = fast_decode_all([raw.encode(), raw.encode()], kind)
    assert got is not None, "the usual event must take the one-pass path"
    want = orjson.loads(raw)
    assert _same(got[0], want) and _same(got[1], want)
    validate_event(got[0])
    role = "labels" if kind == "label" else "predictions"
    assert fast_decode_all([raw.encode()], "label" if kind == "prediction" else "prediction") is None
    assert all(_same(a, b) for a, b in zip(decode_all([raw.encode()], topic="t", role=role),
                                           [decode(raw.encode(), topic="t", role=role)]))


@pytest.mark.parametrize("raw", _LEFT)
def test_the_one_pass_decoder_leaves_the_rest_to_the_slower_paths(raw: str) -> None:
    from driftline.collector.decode import decode_all
    from driftline.sdk.contract.fastcheck import fast_decode_all

    good = (_P + "}").encode()
    assert fast_decode_all([good, raw.encode()], "prediction") is None
    got = decode_all([good, raw.encode()], topic="t", role="predictions", offset=3)
    want = [decode(v, topic="t", role="predictions", offset=3) for v in (good, raw.encode())]
    assert len(got) == 2 and all(_same(a, b) if isinstance(b, dict) else a == b for a, b in zip(got, want))
