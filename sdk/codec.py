"""JSON encoding of events: orjson when installed (several times faster), else the stdlib.

Both produce compact UTF-8 and refuse NaN and infinities (validation rejects them first).
"""

from __future__ import annotations

import json
from typing import Any

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
