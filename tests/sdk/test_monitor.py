"""Monitor: what users call from their model code."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pandas as pd
import pytest

import driftline.sdk as sdk
from driftline.sdk import ConfigError, InMemoryExporter, Monitor, SchemaError


def make(**kw: object) -> tuple[Monitor, InMemoryExporter]:
    sink = InMemoryExporter()
    return Monitor(model="churn", version="7", exporter=sink, **kw), sink  # type: ignore[arg-type]


def test_log_returns_the_id_of_the_stored_event_with_every_field() -> None:
    m, sink = make(tags={"team": "growth"})
    pid = m.log({"age": 41, "plan": "pro"}, {"yes": 0.7, "no": 0.3}, latency_ms=2.5, tags={"region": "eu"},
                variant="challenger", request_id="req-9")
    assert m.flush(2)
    [event] = sink.events()
    assert event["event_id"] == pid
    assert event["model"] == "churn" and event["model_version"] == "7"
    assert event["features"] == {"age": 41, "plan": "pro"}
    assert event["prediction"] == {"yes": 0.7, "no": 0.3}
    assert event["variant"] == "challenger" and event["request_id"] == "req-9"
    assert event["tags"] == {"team": "growth", "region": "eu"}
    assert event["latency_ms"] == 2.5 and event["status"] == "ok"
    assert event["timestamp"].endswith("Z")


def test_labels_and_outcomes_refer_to_predictions() -> None:
    m, sink = make()
    pid = m.log({"x": 1}, 0.2)
    m.log_label(pid, 1)
    m.log_outcome("conversion", 19.99, prediction_id=pid)
    assert m.flush(2)
    pred, label, outcome = sink.events()
    assert label["type"] == "label" and label["prediction_id"] == pid and label["label"] == 1
    assert outcome["type"] == "outcome" and outcome["prediction_id"] == pid and outcome["value"] == 19.99


def test_the_callers_dict_can_change_after_log() -> None:
    m, sink = make()
    features = {"x": 1}
    m.log(features, 1)
    features["x"] = 2
    assert m.flush(2)
    assert sink.events()[0]["features"] == {"x": 1}


def test_numpy_and_pandas_values_are_logged_as_plain_json() -> None:
    m, sink = make()
    m.log({"a": np.int64(3), "b": np.float32(0.5), "c": np.bool_(True)}, np.array([0.1, 0.9]))
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    ids = m.log_batch(df, np.array([0, 1, 0]))
    assert m.flush(2)
    events = sink.events()
    assert events[0]["features"] == {"a": 3, "b": 0.5, "c": True}
    assert events[0]["prediction"] == pytest.approx([0.1, 0.9])
    assert [e["event_id"] for e in events[1:]] == ids
    assert [e["features"] for e in events[1:]] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]
    assert [e["prediction"] for e in events[1:]] == [0, 1, 0]


def test_log_batch_takes_rows_of_values_named_in_order() -> None:
    """A 2-D array (what a model is called with) or lists of values: one event per row, the columns
    named by ``feature_names`` or ``f0``, ``f1``, ... as the sidecar names an unnamed instance."""
    m, sink = make()
    X = np.array([[1.5, 2.0], [3.5, 4.0]])
    ids = m.log_batch(X, np.array([0.1, 0.9]))
    m.log_batch([[1, "a"], [2, "b"]], [0, 1], feature_names=["age", "plan"])
    m.log_batch(np.array([7.0]), [1])  # one feature per row
    assert m.flush(2)
    events = sink.events("prediction")
    assert [e["event_id"] for e in events[:2]] == ids
    assert [e["features"] for e in events] == [{"f0": 1.5, "f1": 2.0}, {"f0": 3.5, "f1": 4.0},
                                               {"age": 1, "plan": "a"}, {"age": 2, "plan": "b"}, {"f0": 7.0}]
    assert [e["prediction"] for e in events] == [0.1, 0.9, 0, 1, 1]


def test_log_batch_refuses_rows_that_do_not_match_their_names(caplog: pytest.LogCaptureFixture) -> None:
    m, sink = make()
    with caplog.at_level(logging.WARNING, logger="driftline.sdk"):
        assert m.log_batch([[1, 2], [3]], [0, 1]) == []
        assert m.log_batch(np.zeros((2, 3)), [0, 1], feature_names=["a", "b"]) == []
    assert m.flush(2) and sink.events() == []
    assert [r.getMessage() for r in caplog.records] == [
        "driftline: log_batch of churn: row 1 has 1 values but row 0 has 2; nothing logged",
        "driftline: log_batch of churn: row 0 has 3 values but feature_names has 2; nothing logged"]
    strict, _ = make(strict=True)
    with pytest.raises(ConfigError, match="log_batch: 2 feature rows but 3 predictions"):
        strict.log_batch(np.zeros((2, 2)), [0, 1, 2])


def test_subclasses_of_json_types_are_logged_as_their_base_type() -> None:
    """numpy's float64 (what a regressor's ``predict`` and ``predict_proba`` give), enums: each event
    arrives, with plain values (orjson refuses float subclasses: they were dropped as serialize_error)."""
    import enum

    class Tier(str, enum.Enum):
        GOLD = "gold"

    class Level(enum.IntEnum):
        HIGH = 2

    m, sink = make()
    pid = m.log({"x": np.float64(2.5), "tier": Tier.GOLD, "level": Level.HIGH}, np.float64(0.75))
    m.log({"x": 1.0}, {"churn": np.float64(0.1)})
    m.log_label(pid, np.float64(0.5))
    m.log_outcome("revenue", np.float64(12.5), prediction_id=pid)
    assert m.flush(2)
    assert m.stats().dropped_total == 0
    first, second = sink.events("prediction")
    assert first["features"] == {"x": 2.5, "tier": "gold", "level": 2} and first["prediction"] == 0.75
    assert [type(v) for v in first["features"].values()] == [float, str, int]
    assert second["prediction"] == {"churn": 0.1}
    assert sink.events("label")[0]["label"] == 0.5 and sink.events("outcome")[0]["value"] == 12.5


def test_a_nan_feature_is_a_missing_value_not_a_lost_event() -> None:
    """NaN is how numpy and pandas say "missing"; the schema says it with null. Each event arrives
    with its NaN features as null (the whole event used to be refused), a NaN prediction is still
    refused by its field's name, and infinities stay refused."""
    m, sink = make()
    m.log({"age": float("nan"), "plan": "pro", "score": np.float64("nan")}, 1)
    m.log({f"f{k}": 0.5 for k in range(999)} | {"f999": np.nan}, 0)  # wide: found by the sum's NaN
    df = pd.DataFrame({"income": [52_000.0, None], "plan": ["pro", None]})
    m.log_batch(df, np.array([0.2, 0.7]))
    m.log({"x": 1.0}, float("nan"))
    m.log({"x": float("inf")}, 1)
    assert m.flush(2)
    events = sink.events("prediction")
    assert events[0]["features"] == {"age": None, "plan": "pro", "score": None}
    assert events[1]["features"]["f999"] is None and events[1]["features"]["f0"] == 0.5
    assert [e["features"] for e in events[2:]] == [{"income": 52_000.0, "plan": "pro"},
                                                   {"income": None, "plan": None}]
    assert len(events) == 4 and m.stats().dropped["invalid_event"] == 2


def test_feature_names_that_are_not_text_are_logged_as_text() -> None:
    """``pandas.DataFrame(X)`` names its columns 0, 1, ...: each row arrives, its names as text (every
    event used to be dropped with "expected string or bytes-like object")."""
    m, sink = make()
    m.log_batch(pd.DataFrame(np.array([[1.0, np.nan], [3.0, 4.0]])), [0, 1])
    m.log({0: 1.5, "plan": "pro"}, 1)
    assert m.flush(2)
    assert [e["features"] for e in sink.events("prediction")] == [
        {"0": 1.0, "1": None}, {"0": 3.0, "1": 4.0}, {"0": 1.5, "plan": "pro"}]
    assert m.stats().dropped_total == 0


def test_numeric_tags_and_request_ids_are_logged_as_text() -> None:
    """Tags name segments: ``shard=3`` is the segment "3" (the event used to be refused whole), a
    None tag is no tag, an int request id is its text; a tag that is no scalar is still refused."""
    m, sink = make(tags={"team": "growth", "pod": np.int64(7)})
    m.log({"a": 1}, 1, tags={"shard": 3, "beta": True, "exp": None}, request_id=12345)
    m.log_label(m.log({"a": 2}, 0), 1, tags={"shard": 4.5})
    m.log({"a": 3}, 1, tags={"bad": [1]})
    assert m.flush(2)
    first, second = sink.events("prediction")
    assert first["tags"] == {"team": "growth", "pod": "7", "shard": "3", "beta": "true"}
    assert first["request_id"] == "12345" and second["tags"] == {"team": "growth", "pod": "7"}
    assert sink.events("label")[0]["tags"] == {"team": "growth", "pod": "7", "shard": "4.5"}
    assert m.stats().dropped["invalid_event"] == 1


def test_dates_decimals_uuids_and_enums_are_logged_as_their_json_form() -> None:
    """What a database row or a feature pipeline holds: each event arrives (they were dropped as
    invalid or unserialisable), its values in the nearest JSON type."""
    import datetime
    import decimal
    import enum
    import fractions
    import uuid

    class Plan(enum.Enum):
        PRO = 3

    m, sink = make()
    when = datetime.datetime(2026, 12, 5, 15, 30, tzinfo=datetime.timezone.utc)
    m.log({"amount": decimal.Decimal("12.50"), "signup": datetime.date(2026, 1, 2), "at": when,
           "user": uuid.UUID(int=5), "plan": Plan.PRO, "share": fractions.Fraction(1, 4)}, decimal.Decimal("0.5"))
    m.log({"gone": decimal.Decimal("sNaN")}, 1)  # a NaN, whatever its kind: missing
    assert m.flush(2)
    event, nan = sink.events("prediction")
    assert nan["features"] == {"gone": None}
    assert event["features"] == {"amount": 12.5, "signup": "2026-01-02", "at": "2026-12-05T15:30:00+00:00",
                                 "user": "00000000-0000-0000-0000-000000000005", "plan": 3, "share": 0.25}
    assert event["prediction"] == 0.5
    assert m.stats().dropped_total == 0


def test_invalid_events_are_counted_and_never_raise_by_default() -> None:
    m, sink = make()
    m.log({"x": [1, 2]}, 1)  # a list is not a feature value
    m.log({"x": 1}, 1)
    assert m.flush(2)
    assert m.stats().dropped["invalid_event"] == 1
    assert len(sink.events()) == 1


def test_strict_mode_raises_naming_the_field() -> None:
    m, _ = make(strict=True)
    with pytest.raises(SchemaError, match="features.x"):
        m.log({"x": [1, 2]}, 1)


def test_decorator_logs_sync_calls_errors_and_latency() -> None:
    m, sink = make()

    @m.watch
    def predict(features: dict) -> float:
        if features["x"] < 0:
            raise ValueError("negative input")
        return features["x"] * 2

    assert predict({"x": 2}) == 4
    with pytest.raises(ValueError):
        predict({"x": -1})
    assert m.flush(2)
    ok, err = sink.events()
    assert ok["features"] == {"x": 2} and ok["prediction"] == 4 and ok["latency_ms"] >= 0
    assert err["status"] == "error" and err["error"].startswith("ValueError") and err["prediction"] is None


def test_decorator_on_a_method_takes_the_features_after_self() -> None:
    """``self`` is not a mapping: the features are the first positional mapping, not an empty
    ``{}`` from the keyword arguments (each event used to arrive without its features)."""
    m, sink = make()

    class Model:
        @m.watch
        def predict(self, features: dict) -> float:
            return features["x"] + 1

    @m.watch
    def score(**kwargs: float) -> float:
        return kwargs["age"] / 100

    assert Model().predict({"x": 1.5}) == 2.5
    assert Model().predict(features={"x": 3.0}) == 4.0  # a mapping passed by keyword
    assert score(age=41.0, plan="pro") == 0.41  # keyword arguments are the features
    assert m.flush(2)
    assert [(e["features"], e["prediction"]) for e in sink.events()] == [
        ({"x": 1.5}, 2.5), ({"x": 3.0}, 4.0), ({"age": 41.0, "plan": "pro"}, 0.41)]


def test_decorator_wraps_async_functions_with_custom_extraction() -> None:
    m, sink = make()

    @m.watch(features_from=lambda request: request["inputs"], prediction_from=lambda out: out["label"])
    async def predict(request: dict) -> dict:
        await asyncio.sleep(0)
        return {"label": "spam", "debug": "x"}

    assert asyncio.run(predict({"inputs": {"len": 12}})) == {"label": "spam", "debug": "x"}
    assert m.flush(2)
    [event] = sink.events()
    assert event["features"] == {"len": 12} and event["prediction"] == "spam"


def test_denylisted_fields_are_masked_before_leaving_the_process() -> None:
    m, sink = make()
    m.log({"password": "hunter2", "cardNumber": "4111111111111111", "age": 41}, 1, tags={"user_email": "a@b.c"})
    assert m.flush(2)
    [event] = sink.events()
    assert "hunter2" not in str(event) and "4111111111111111" not in str(event) and "a@b.c" not in str(event)
    assert event["features"]["age"] == 41


def test_bad_constructor_arguments_fail_with_what_to_change() -> None:
    with pytest.raises(ConfigError, match="model"):
        Monitor(model="", exporter=InMemoryExporter())
    with pytest.raises(ConfigError, match="DRIFTLINE_KAFKA_BOOTSTRAP"):
        sdk.SdkSettings(kafka_bootstrap="localhost")
    with pytest.raises(ConfigError, match="DRIFTLINE_QUEUE_SIZE"):
        sdk.SdkSettings.from_env({"DRIFTLINE_QUEUE_SIZE": "lots"})


def test_public_surface_is_what_the_docs_promise() -> None:
    assert sorted(sdk.__all__) == sorted([
        "SCHEMA_VERSION", "BatchExporter", "Client", "ConfigError", "DriftlineError", "ExportResult", "ExporterStats",
        "InMemoryExporter", "KafkaExporter", "Monitor", "Record", "SchemaError", "SdkSettings",
        "Topics", "uuid7", "validate_event",
    ])
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


def test_importing_the_sdk_pulls_in_no_server_dependencies() -> None:
    import subprocess
    import sys

    code = ("import sys, driftline.sdk; heavy = [m for m in ('numpy', 'pandas', 'presidio_analyzer', 'aiokafka', "
            "'chdb', 'streamlit', 'kafka', 'aiohttp', 'clickhouse_connect') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
