"""JSON encoding of events: orjson when installed (several times faster), else the stdlib; and
the conversion of numpy and other array-like values to plain JSON types (without importing numpy).

Both produce compact UTF-8 and refuse NaN and infinities (validation rejects them first).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the fallback keeps odd installs working
    _orjson = None


def dumps(obj: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON. Raises ValueError (with ``pos`` where known) on bad input."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


def to_plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and other array-likes into JSON types without importing numpy."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
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
    return value


_JSON_SCALARS = frozenset((str, bool, int, float, type(None)))


def plain_features(features: dict[str, Any]) -> dict[str, Any]:
    """``features`` itself (a private copy) when every value is a JSON scalar, else a plain copy."""
    scalars = _JSON_SCALARS
    for v in features.values():
        if type(v) not in scalars:
            break
    else:
        return features
    out: dict[str, Any] = {}
    for k, v in features.items():
        if not (v is None or isinstance(v, (str, bool, int, float))):
            v = to_plain(v)
        out[k] = v
    return out
