"""JSON encoding of events: orjson when installed (several times faster), else the stdlib; and
the conversion of numpy and other array-like values to plain JSON types (without importing numpy).

Both produce compact UTF-8 and refuse NaN and infinities (validation rejects them first).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping  # typing.Mapping makes isinstance ~2.5x slower
from enum import Enum
from typing import Any
from uuid import UUID

from driftline.sdk.contract.schema import SCALAR_TYPES

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the fallback keeps odd installs working
    _orjson = None
_msgspec_decode: Any = None  # msgspec.json.decode, imported on first use: importing the SDK stays cheap


def dumps(obj: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON. Raises ValueError (with ``pos`` where known) on bad input."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def loads_as_stdlib(data: bytes | str) -> Any:
    """Parse JSON to the very values ``json.loads`` gives, raising what it raises; ~8x faster.

    For bodies other programs wrote (the sidecar's extraction), where ``loads`` will not do:
    orjson turns integers beyond 64 bits into floats. msgspec's decoder keeps them exact and rounds
    floats correctly; what it refuses -- ``NaN`` and ``Infinity``, floats beyond the double range,
    lone surrogates, a byte-order mark, UTF-16/32, invalid JSON -- goes to the stdlib, which reads
    it as before or raises its own error. (``tests/sdk/test_codec.py`` compares the two.)

    >>> loads_as_stdlib(b'{"n": 123456789012345678901234567890, "x": NaN}')
    {'n': 123456789012345678901234567890, 'x': nan}
    """
    global _msgspec_decode
    if _msgspec_decode is None:
        try:
            from msgspec.json import decode as _msgspec_decode
        except ImportError:  # pragma: no cover - msgspec is a dependency; the stdlib does it all then
            _msgspec_decode = False
    if _msgspec_decode:
        try:
            return _msgspec_decode(data)
        except Exception:  # noqa: BLE001 - msgspec's DecodeError or ValidationError: ask the stdlib
            pass
    return json.loads(data)


def to_plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and other array-likes into JSON types without importing numpy.

    A subclass of a JSON type becomes that type: numpy's ``float64`` (a float subclass, what a
    regressor's ``predict`` returns), an ``IntEnum``, a ``str`` enum. orjson refuses float
    subclasses, and an event holding one would be dropped. Values a database row or a feature
    pipeline commonly hold become the nearest JSON type: a date, time or datetime its ISO 8601 text,
    a UUID its text, another enum its value, a ``Decimal`` or ``Fraction`` a float.

    >>> import enum
    >>> class Tier(str, enum.Enum):
    ...     GOLD = "gold"
    >>> class Score(float):
    ...     pass
    >>> [(v, type(v).__name__) for v in to_plain([Score(0.5), Tier.GOLD, True, 3, None])]
    [(0.5, 'float'), ('gold', 'str'), (True, 'bool'), (3, 'int'), (None, 'NoneType')]
    >>> import datetime, decimal
    >>> to_plain([datetime.date(2026, 12, 5), decimal.Decimal("12.50")])
    ['2026-12-05', 12.5]
    """
    if type(value) in SCALAR_TYPES:
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):  # bool cannot be subclassed: its values are caught above
        return int(value)
    if isinstance(value, str):
        return str.__str__(value)  # its text (``str()`` of an enum member would be its name)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return to_plain(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return to_plain(item())
    if isinstance(value, (_dt.date, _dt.time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return to_plain(value.value)
    if hasattr(value, "__float__"):  # Decimal (database numerics), Fraction
        try:
            return float(value)
        except ValueError:  # a Decimal's signalling NaN: a NaN (a missing feature; elsewhere refused by name)
            return float("nan")
        except (TypeError, OverflowError):
            return value
    return value


def plain_features(features: dict[str, Any]) -> dict[str, Any]:
    """``features`` itself (a private copy) when every value is a JSON scalar, else a plain copy."""
    if SCALAR_TYPES.issuperset(map(type, features.values())):  # in C: half the time of a loop at 1,000
        return features
    scalars = SCALAR_TYPES
    return {k: v if type(v) in scalars else to_plain(v) for k, v in features.items()}


def nan_as_missing(features: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of ``features`` with NaN -- numpy's and pandas' missing value -- as None, the event
    schema's missing value; None when no value is NaN. The SDK calls it only for an event that
    validation refused, so an event without NaN pays nothing for it.

    >>> nan_as_missing({"age": float("nan"), "plan": "pro", "score": 0.5})
    {'age': None, 'plan': 'pro', 'score': 0.5}
    >>> nan_as_missing({"age": 41}) is None
    True
    """
    if not any(v != v for v in features.values()):  # only NaN is unequal to itself
        return None
    return {k: None if v != v else v for k, v in features.items()}


def plain_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """``tags`` itself when every value is text, else a copy whose numbers and bools are their text
    (tags name segments: ``shard=3`` is the segment "3") and whose None values are left out (no
    tag). Other values stay, for validation to refuse by name.

    >>> plain_tags({"region": "eu", "shard": 3, "beta": True, "ab": None})
    {'region': 'eu', 'shard': '3', 'beta': 'true'}
    """
    if all(type(v) is str for v in tags.values()):
        return tags
    return {k: _tag_text(v) for k, v in tags.items() if v is not None}


def _tag_text(v: Any) -> Any:
    v = to_plain(v)
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) in (int, float):
        return str(v)
    return v
