"""Event schema v1: valid events pass, every kind of mistake names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from driftline.sdk import SchemaError, uuid7, validate_event
from driftline.sdk.contract.schema import MAX_FEATURES, MAX_STRING_LEN

PRED: dict[str, Any] = {
    "schema_version": 1, "type": "prediction", "event_id": "0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f80",
    "timestamp": "2026-11-24T03:22:12.123456Z", "model": "churn", "model_version": "3", "variant": "primary",
    "request_id": "req-1", "features": {"age": 41, "plan": "pro", "active": True, "coupon": None},
    "prediction": {"yes": 0.8, "no": 0.2}, "latency_ms": 3.2, "status": "ok", "error": None,
    "tags": {"region": "eu"},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(PRED)
    target = event
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return event


def test_valid_events_pass() -> None:
    assert validate_event(copy.deepcopy(PRED))["model"] == "churn"
    for prediction in (1, 0.5, "cat", True, None, [1, 2], [[0.1, 0.9]], {"a": 1}):
        validate_event(with_("prediction", prediction))
    validate_event({"schema_version": 1, "type": "label", "event_id": uuid7(), "timestamp": "2026-01-01T00:00:00Z",
                    "model": "m", "prediction_id": uuid7(), "label": "cat"})
    validate_event({"schema_version": 1, "type": "outcome", "event_id": uuid7(), "timestamp": "2026-01-01T00:00:00+02:00",
                    "model": "m", "request_id": "r1", "name": "click", "value": True})


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("schema_version", 2, "schema_version"),
        ("schema_version", KeyError, "schema_version"),
        ("type", "metric", "type"),
        ("event_id", "not-a-uuid", "event_id"),
        ("timestamp", "yesterday", "timestamp"),
        ("timestamp", 1700000000, "timestamp"),
        ("model", "", "model"),
        ("model", KeyError, "model"),
        ("features", [1, 2], "features"),
        ("features.age", [1, 2], "features.age"),
        ("features.age", {"x": 1}, "features.age"),
        ("features.age", float("nan"), "features.age"),
        ("prediction", {"yes": "high"}, "prediction.yes"),
        ("prediction", object(), "prediction"),
        ("latency_ms", "fast", "latency_ms"),
        ("latency_ms", -1, "latency_ms"),
        ("status", "meh", "status"),
        ("tags.region", 3, "tags.region"),
        ("latncy_ms", 3, "latncy_ms"),
    ],
)
def test_errors_name_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate_event(with_(path, value))
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


@pytest.mark.parametrize("case", range(19))
def test_the_fast_path_never_accepts_what_the_validator_refuses(case: int) -> None:
    from driftline.sdk.contract.fastcheck import fast_valid

    params = test_errors_name_the_field.pytestmark[0].args[1]  # type: ignore[attr-defined]
    path, value, _ = params[case]
    assert fast_valid(with_(path, value)) is False


@pytest.mark.parametrize("kind", [None, ["prediction"], {"t": 1}, 1, "label", "outcome", "nope"])
def test_the_fast_path_refuses_a_missing_odd_or_mismatched_type(kind: Any) -> None:
    # The fast path converts to the Struct the "type" names; a concrete tagged Struct does not
    # require its tag, so a missing, unhashable or other type must not reach it unchecked.
    from driftline.sdk.contract.fastcheck import fast_valid

    event = copy.deepcopy(PRED)
    if kind is None:
        del event["type"]
    else:
        event["type"] = kind
    assert fast_valid(event) is False
    with pytest.raises(SchemaError) as info:
        validate_event(event)
    assert info.value.field in {"type", "features", "prediction", "latency_ms", "prediction_id", "label",
                                "name", "model_version", "variant", "request_id", "status", "error"}


@pytest.mark.parametrize("case", range(19))
def test_the_batch_fast_path_never_accepts_what_the_validator_refuses(case: int) -> None:
    from driftline.sdk.contract.fastcheck import fast_valid_all

    params = test_errors_name_the_field.pytestmark[0].args[1]  # type: ignore[attr-defined]
    path, value, _ = params[case]
    event = with_(path, value)
    assert fast_valid_all([copy.deepcopy(PRED), event], str(event.get("type"))) is False


class _Float(float):
    """A float subclass, as numpy's float64 is (the light SDK's tests run without numpy)."""


_FEATURES = {
    "floats": {f"f{k}": k / 7 for k in range(1000)}, "ints": {"a": 1, "b": -(2**63), "c": 2**63 - 1},
    "int over 64 bits": {"a": 2**64 + 5}, "int just over": {"a": 2**63}, "int far over": {"a": 10**400},
    "int just under": {"a": -(2**63) - 1}, "inf": {"a": float("inf")}, "nan": {"a": float("nan")},
    "bool": {"a": 1.5, "b": True}, "none": {"a": 1.5, "b": None}, "str": {"a": 1.5, "b": "x"},
    "long str": {"a": "x" * (MAX_STRING_LEN + 1)}, "empty name": {"": 1.0}, "long name": {"x" * 257: 1.0},
    "name at the limit": {"x" * 256: 1.0}, "non-str name": {1: 1.0}, "list": {"a": [1.0]}, "dict": {"a": {"b": 1}},
    "too many": {f"f{k}": 1.0 for k in range(MAX_FEATURES + 1)},
    "at the limit": {f"f{k}": 1.0 for k in range(MAX_FEATURES)},
    "empty": {}, "not a dict": [1.0], "float subclass": {"a": _Float(1.0)},
    "huge floats": {"a": 1e300, "b": -1.7e308, "c": 9.3e18}, "huge float and int": {"a": 1e300, "b": 2**63},
    "floats and a big int": {"a": 0.5, "b": 2**63 - 1, "c": -(2**63)}, "names of 1 char": {"a": 1.0, "b": 2},
}


@pytest.mark.parametrize("name", sorted(_FEATURES))
def test_the_batch_fast_path_judges_features_as_msgspec_does(name: str) -> None:
    """Plain-number features are checked at C speed instead of by msgspec: the verdict must be
    msgspec's (the single-event path), and never an acceptance the validator refuses."""
    from driftline.sdk.contract.fastcheck import fast_valid, fast_valid_all

    event = copy.deepcopy(PRED)
    event["features"] = _FEATURES[name]
    batch = fast_valid_all([copy.deepcopy(PRED), event], "prediction")
    assert batch == fast_valid(event)
    if batch:
        validate_event(event)


def test_the_fast_path_accepts_valid_events() -> None:
    from driftline.sdk.contract.fastcheck import fast_valid

    assert fast_valid(copy.deepcopy(PRED)) is True
    for prediction in (1, 0.5, "cat", True, None, [1, 2], [[0.1, 0.9]], {"a": 1}):
        assert fast_valid(with_("prediction", prediction)) is True
    assert fast_valid({"schema_version": 1, "type": "outcome", "event_id": uuid7(), "timestamp": "2026-01-01T00:00:00Z",
                       "model": "m", "name": "click", "value": 1}) is False  # needs an id


def test_error_messages_do_not_echo_values() -> None:
    secret = "jane.doe@example.com"
    with pytest.raises(SchemaError) as info:
        validate_event(with_("features.email", [secret]))
    assert secret not in str(info.value)


def test_label_and_outcome_requirements() -> None:
    base = {"schema_version": 1, "event_id": uuid7(), "timestamp": "2026-01-01T00:00:00Z", "model": "m"}
    with pytest.raises(SchemaError, match="prediction_id"):
        validate_event({**base, "type": "label", "label": 1})
    with pytest.raises(SchemaError, match="label: missing"):
        validate_event({**base, "type": "label", "prediction_id": uuid7()})
    with pytest.raises(SchemaError, match="prediction_id or request_id"):
        validate_event({**base, "type": "outcome", "name": "click", "value": 1})
    with pytest.raises(SchemaError, match="value"):
        validate_event({**base, "type": "outcome", "request_id": "r", "name": "click", "value": "yes"})


def test_uuid7_is_time_ordered_and_unique() -> None:
    import uuid

    from driftline.sdk.ids import uuid7_time_ms

    ids = [uuid7() for _ in range(10_000)]
    stamps = [uuid7_time_ms(i) for i in ids]
    assert stamps == sorted(stamps)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert uuid7_time_ms(uuid7(now_ns=1_700_000_000_123_000_000)) == 1_700_000_000_123
