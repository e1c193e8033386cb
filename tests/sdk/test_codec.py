"""``loads_as_stdlib`` gives what ``json.loads`` gives: the same values, the same errors."""

from __future__ import annotations

import json
import random
import struct

import pytest

from driftline.sdk.codec import loads_as_stdlib


def _same(a: object, b: object) -> bool:
    """Equal values of equal types all the way down (1 and 1.0 differ; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)  # nan equals nan, -0.0 differs from 0.0
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    return a == b


def _number(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randint(-(2**70), 2**70))  # beyond 64 bits: orjson would make these floats
    if kind == 1:
        return repr(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])  # any double bits
    if kind == 2:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randrange(1, 25)}e}"
    if kind == 3:
        sign = "-" if rng.random() < 0.5 else ""
        return f"{sign}{rng.randrange(10 ** rng.randrange(1, 20))}.{rng.randrange(10**6)}e{rng.randint(-330, 330)}"
    if kind == 4:
        return rng.choice(["0", "-0", "-0.0", "1E5", "2.5e-324", "1.7976931348623157e308", "1e309", "NaN",
                           "Infinity", "-Infinity", "01", "1.", ".5", "+1"])
    return str(rng.randint(-1000, 1000))


def _text(rng: random.Random) -> str:
    pieces = ["a", "é", "€", "😀", "\\u00e9", "\\ud83d\\ude00", "\\ud800", "\\n", '\\"', "\\\\", "\\/", " ", "\t"]
    return '"' + "".join(rng.choice(pieces) for _ in range(rng.randrange(6))) + '"'


def _doc(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return _number(rng)
    if kind == 1:
        return _text(rng)
    if kind == 2:
        return rng.choice(["true", "false", "null"])
    if kind == 3:
        return _number(rng)
    if kind in (4, 5):
        keys = [_text(rng) for _ in range(rng.randrange(5))]
        return "{" + ", ".join(f"{k}: {_doc(rng, depth + 1)}" for k in keys) + "}"
    return "[" + ",".join(_doc(rng, depth + 1) for _ in range(rng.randrange(5))) + "]"


def _outcome(fn, data):  # type: ignore[no-untyped-def]
    try:
        return "ok", fn(data)
    except Exception as exc:  # noqa: BLE001 - the error's type is the outcome
        return "error", type(exc)


@pytest.mark.parametrize("seed", range(4))
def test_random_documents_parse_as_the_stdlib_parses_them(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2_000):
        text = _doc(rng)
        if rng.random() < 0.05:  # damaged documents: both must refuse them alike
            cut = rng.randrange(len(text) + 1)
            text = text[:cut] + rng.choice([",", "}", "", "x", "]"]) + text[cut + 1:]
        for data in (text.encode(), text):
            got, want = _outcome(loads_as_stdlib, data), _outcome(json.loads, data)
            assert got[0] == want[0] and (_same(got[1], want[1]) if got[0] == "ok" else got[1] is want[1]), text


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf{}",  # a byte-order mark
    '{"é": 1}'.encode("utf-16"),
    '{"a": [1, 2]}'.encode("utf-32-le"),
    b'{"a": 1, "a": 2}',  # the last duplicate wins in both
    b"\xff\xfe",
    b"",
    b"  [1]  ",
])
def test_encodings_and_edges_as_the_stdlib(data: bytes) -> None:
    got, want = _outcome(loads_as_stdlib, data), _outcome(json.loads, data)
    assert got[0] == want[0]
    assert _same(got[1], want[1]) if got[0] == "ok" else got[1] is want[1]


def test_plain_features_keeps_json_scalars_and_converts_the_rest() -> None:
    np = pytest.importorskip("numpy")
    from driftline.sdk.codec import plain_features

    plain = {"a": 1, "b": 2.5, "c": "x", "d": True, "e": None}
    assert plain_features(plain) is plain  # nothing to convert: no copy
    mixed = {"a": 1, "b": np.float32(0.5), "c": np.int64(3), "d": np.bool_(True), "e": np.array([1, 2])}
    out = plain_features(mixed)
    assert out == {"a": 1, "b": 0.5, "c": 3, "d": True, "e": [1, 2]}
    assert [type(v) for v in out.values()] == [int, float, int, bool, list]
    assert type(mixed["b"]) is np.float32  # the caller's values are left as they were

    class Score(float):  # a subclass of a JSON type (numpy's float64 is one) becomes that type
        pass

    out = plain_features({"s": Score(1.5), "f": np.float64(0.25), "i": 2})
    assert out == {"s": 1.5, "f": 0.25, "i": 2} and {type(v) for v in out.values()} == {float, int}



def test_nan_as_missing_clears_every_nan_and_only_nan() -> None:
    np = pytest.importorskip("numpy")
    from driftline.sdk.codec import nan_as_missing, plain_features

    assert nan_as_missing({"a": 1.0, "b": float("nan")}) == {"a": 1.0, "b": None}
    assert nan_as_missing({"a": "x", "b": float("nan"), "c": None}) == {"a": "x", "b": None, "c": None}
    assert nan_as_missing(plain_features({"a": np.float32("nan"), "b": 2**2000})) == {"a": None, "b": 2**2000}
    assert nan_as_missing({"a": float("inf"), "b": float("-inf"), "c": "x"}) is None  # not missing values
