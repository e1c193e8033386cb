"""Event schema v1: the contract between producers (SDK, sidecar) and the collector.

Three event types travel as JSON objects, many per Kafka record (newline-delimited, framed by
:mod:`driftline.sdk.contract.wire`; a record without the batch header holds one event):

* ``prediction`` -- one model call: inputs, output, latency, status, variant.
* ``label``      -- delayed ground truth for a prediction id.
* ``outcome``    -- a business signal (click, conversion value) for a prediction or request id.

Every event carries ``schema_version`` and ``type``. :func:`validate_event` checks a decoded
object and raises :class:`~driftline.sdk.errors.SchemaError` naming the offending field, e.g.
``features.age: expected number, string, bool or null, got list``.

Example
-------
>>> ev = {"schema_version": 1, "type": "label", "event_id": "0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f80",
...       "timestamp": "2026-11-24T03:22:12.123456Z", "model": "churn", "prediction_id":
...       "0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f81", "label": 1}
>>> validate_event(ev)["type"]
'label'
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from driftline.sdk.contract.kinds import EVENT_KINDS, LABEL, OUTCOME, PREDICTION
from driftline.sdk.contract.timestamps import TIMESTAMP_PATTERN
from driftline.sdk.errors import SchemaError

SCHEMA_VERSION = 1
EVENT_TYPES = tuple(k.type for k in EVENT_KINDS)
STATUSES = ("ok", "error")

MAX_NAME_LEN = 256
MAX_FEATURES = 10_000
MAX_STRING_LEN = 1_000_000  # spaCy refuses longer texts; we refuse them at the door
#: the JSON scalar types of a feature value, by exact type (what ``type(v)`` may be)
SCALAR_TYPES = frozenset((str, bool, int, float, type(None)))
#: the feature values that are numbers, by exact type: a bool is not a number here
NUMBER_TYPES = frozenset((int, float))


def positional_feature(i: int) -> str:
    """The name of the ``i``-th of a row's unnamed values (a model's input array, an instance list):
    ``f0``, ``f1``, ... (the SDK's ``log_batch``, the sidecar's extraction and input schemas)."""
    return f"f{i}"

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID_RE = re.compile(UUID_PATTERN)
_TS_RE = re.compile(TIMESTAMP_PATTERN)

_COMMON_REQUIRED = ("schema_version", "type", "event_id", "timestamp", "model")
_ALLOWED = {
    PREDICTION.type: frozenset(
        _COMMON_REQUIRED
        + ("model_version", "variant", "request_id", "features", "prediction", "latency_ms",
           "status", "error", "tags")
    ),
    LABEL.type: frozenset(_COMMON_REQUIRED + ("model_version", "prediction_id", "label", "tags")),
    OUTCOME.type: frozenset(
        _COMMON_REQUIRED + ("prediction_id", "request_id", "name", "value", "tags")
    ),
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_finite(field: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaError(field, f"expected a finite number, got {value!r}")


def _check_str(field: str, value: Any, *, max_len: int = MAX_NAME_LEN, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise SchemaError(field, f"expected string, got {_type_name(value)}")
    if not empty and not value:
        raise SchemaError(field, "must not be empty")
    if len(value) > max_len:
        raise SchemaError(field, f"longer than {max_len} characters ({len(value)})")


def _check_scalar(field: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _check_finite(field, value)
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING_LEN:
            raise SchemaError(field, f"string longer than {MAX_STRING_LEN} characters")
        return
    raise SchemaError(field, f"expected number, string, bool or null, got {_type_name(value)}")


def check_features(features: Any, field: str = "features") -> None:
    """Features: a flat mapping of name to number, string, bool or null."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise SchemaError(field, f"expected object, got {_type_name(features)}")
    if len(features) > MAX_FEATURES:
        raise SchemaError(field, f"more than {MAX_FEATURES} features ({len(features)})")
    for name, value in features.items():
        kind = type(value)
        # Fast path for the common case: a short name and a plain finite number, or a short string.
        if type(name) is str and 0 < len(name) <= MAX_NAME_LEN:
            if (kind is float and value - value == 0.0) or kind is int or kind is bool or value is None:
                continue
            if kind is str and len(value) <= MAX_STRING_LEN:
                continue
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LEN:
            raise SchemaError(field, f"feature names must be non-empty strings, got {name!r:.40}")
        _check_scalar(f"{field}.{name}", value)


def check_prediction(value: Any, field: str = "prediction") -> None:
    """Prediction: a number, a class label, a list of those, or a class -> score mapping."""
    if value is None or isinstance(value, (str, bool)):
        _check_scalar(field, value)
        return
    if _is_number(value):
        _check_finite(field, value)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                for j, inner in enumerate(item):
                    _check_scalar(f"{field}[{i}][{j}]", inner)
            else:
                _check_scalar(f"{field}[{i}]", item)
        return
    if type(value) is dict or isinstance(value, Mapping):
        for cls, score in value.items():
            if not isinstance(cls, str) or not cls:
                raise SchemaError(field, f"class names must be non-empty strings, got {cls!r:.40}")
            if not _is_number(score):
                raise SchemaError(f"{field}.{cls}", f"expected number, got {_type_name(score)}")
            _check_finite(f"{field}.{cls}", score)
        return
    raise SchemaError(field, f"expected number, label, list or class->score object, got {_type_name(value)}")


def check_tags(tags: Any, field: str = "tags") -> None:
    if type(tags) is not dict and not isinstance(tags, Mapping):
        raise SchemaError(field, f"expected object, got {_type_name(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LEN:
            raise SchemaError(field, f"tag names must be non-empty strings, got {key!r:.40}")
        if not isinstance(value, str):
            raise SchemaError(f"{field}.{key}", f"expected string, got {_type_name(value)}")
        if len(value) > MAX_NAME_LEN * 4:
            raise SchemaError(f"{field}.{key}", f"longer than {MAX_NAME_LEN * 4} characters")


def _check_uuid(field: str, value: Any) -> None:
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise SchemaError(field, "expected a UUID string")


def _fast_valid(event: Any) -> bool:
    global _fast_valid
    from driftline.sdk.contract.fastcheck import fast_valid  # msgspec, compiled on first use

    _fast_valid = fast_valid
    return fast_valid(event)


def validate_event(event: Any) -> dict[str, Any]:
    """Validate a decoded event in place and return it.

    Raises :class:`SchemaError` with the first offending field. Unknown top-level fields are
    errors too (a misspelled ``latncy_ms`` must not vanish silently).
    """
    if _fast_valid(event):
        return event
    if not isinstance(event, dict):
        raise SchemaError("$", f"expected a JSON object, got {_type_name(event)}")
    version = event.get("schema_version")
    if version is None:
        raise SchemaError("schema_version", "missing")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SchemaError("schema_version", f"unsupported version {version!r:.20}; this build reads 1")
    etype = event.get("type")
    if not isinstance(etype, str) or etype not in _ALLOWED:
        raise SchemaError("type", f"expected one of {', '.join(EVENT_TYPES)}, got {etype!r:.40}")
    for name in _COMMON_REQUIRED:
        if name not in event:
            raise SchemaError(name, "missing")
    unknown = set(event) - _ALLOWED[etype]
    if unknown:
        raise SchemaError(sorted(unknown)[0], f"unknown field for a {etype} event")
    _check_uuid("event_id", event["event_id"])
    ts = event["timestamp"]
    if not isinstance(ts, str) or not _TS_RE.match(ts):
        raise SchemaError("timestamp", "expected an RFC 3339 timestamp such as 2026-11-24T03:22:12.123Z")
    _check_str("model", event["model"])
    for name in ("model_version", "variant", "request_id"):
        if event.get(name) is not None:
            _check_str(name, event[name], empty=name == "model_version")
    if "tags" in event and event["tags"] is not None:
        check_tags(event["tags"])
    if etype == PREDICTION.type:
        check_features(event.get("features", {}))
        check_prediction(event.get("prediction"))
        latency = event.get("latency_ms")
        if latency is not None:
            if not _is_number(latency):
                raise SchemaError("latency_ms", f"expected number, got {_type_name(latency)}")
            _check_finite("latency_ms", latency)
            if latency < 0:
                raise SchemaError("latency_ms", "must not be negative")
        status = event.get("status", "ok")
        if status not in STATUSES:
            raise SchemaError("status", f"expected 'ok' or 'error', got {status!r:.40}")
        if event.get("error") is not None:
            _check_str("error", event["error"], max_len=10_000)
    elif etype == LABEL.type:
        if "prediction_id" not in event:
            raise SchemaError("prediction_id", "missing")
        _check_uuid("prediction_id", event["prediction_id"])
        if "label" not in event:
            raise SchemaError("label", "missing")
        check_prediction(event["label"], "label")
    else:
        if event.get("prediction_id") is None and event.get("request_id") is None:
            raise SchemaError("prediction_id", "an outcome needs prediction_id or request_id")
        if event.get("prediction_id") is not None:
            _check_uuid("prediction_id", event["prediction_id"])
        _check_str("name", event.get("name"))
        value = event.get("value")
        if not _is_number(value) and not isinstance(value, bool):
            raise SchemaError("value", f"expected number or bool, got {_type_name(value)}")
        _check_finite("value", value)
    return event
