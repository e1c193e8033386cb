"""Body -> features/prediction mapping for the common shapes and configured paths."""

from __future__ import annotations

import json

import pytest

from driftline.sdk.contract.schema import check_features, check_prediction
from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.extraction import ExtractSpec, extract, flatten, get_path

AUTO = ExtractSpec()


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_flat_object_with_nested_values_is_flattened() -> None:
    rows, err = extract(j({"age": 41, "address": {"city": "Oslo"}, "x": [1, 2]}), j({"prediction": 0.7}), AUTO)
    assert err is None
    assert rows == [({"age": 41, "address.city": "Oslo", "x[0]": 1, "x[1]": 2}, 0.7)]


def test_instances_rows_as_objects_and_as_lists() -> None:
    rows, _ = extract(j({"instances": [{"a": 1}, {"a": 2}]}), j({"predictions": [[0.1, 0.9], [0.8, 0.2]]}), AUTO)
    assert rows == [({"a": 1}, [0.1, 0.9]), ({"a": 2}, [0.8, 0.2])]
    rows, _ = extract(j({"instances": [[1, 2], [3, 4]]}), j({"predictions": ["x", "y"]}), AUTO)
    assert rows == [({"f0": 1, "f1": 2}, "x"), ({"f0": 3, "f1": 4}, "y")]
    named = ExtractSpec(feature_names=("height", "width"))
    rows, _ = extract(j({"instances": [[1, 2]]}), j({"predictions": [5]}), named)
    assert rows == [({"height": 1, "width": 2}, 5)]


def test_v2_inputs_and_outputs_split_along_the_first_dimension() -> None:
    req = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
                      {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["no", "se"]}]}
    resp = {"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]},
                        {"name": "proba", "shape": [2, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.2, 0.8]}]}
    rows, err = extract(j(req), j(resp), AUTO)
    assert err is None
    assert rows == [({"x[0]": 1, "x[1]": 2, "country": "no"}, 0), ({"x[0]": 3, "x[1]": 4, "country": "se"}, 1)]
    rows, _ = extract(j(req), j(resp), ExtractSpec(prediction_output="proba"))
    assert [p for _, p in rows] == [[0.9, 0.1], [0.2, 0.8]]


def test_configured_paths_for_a_custom_shape() -> None:
    spec = ExtractSpec(mode="path", features_path="payload.rows", prediction_path="result.scores")
    req = {"payload": {"rows": [{"a": 1}, {"a": 2}]}, "meta": {"caller": "x"}}
    rows, err = extract(j(req), j({"result": {"scores": [0.3, 0.4]}}), spec)
    assert err is None and rows == [({"a": 1}, 0.3), ({"a": 2}, 0.4)]
    spec = ExtractSpec(features_path="data.user", prediction_path="out[1].p")
    rows, _ = extract(j({"data": {"user": {"id": 3}}}), j({"out": [{"p": 0}, {"p": 0.5}]}), spec)
    assert rows == [({"id": 3}, 0.5)]
    assert get_path({"a": [{"b": 1}]}, "a[0].b") == 1 and get_path({"a": []}, "a[0].b") is None


def test_class_score_dicts_and_odd_outputs_become_schema_valid_predictions() -> None:
    rows, _ = extract(j({"a": 1}), j({"yes": 0.8, "no": 0.2}), AUTO)
    assert rows[0][1] == {"yes": 0.8, "no": 0.2}
    rows, _ = extract(j({"a": 1}), j({"detail": {"deep": [1, {"x": 2}]}}), AUTO)
    check_prediction(rows[0][1])  # a JSON string of the unmappable value, not a schema error
    rows, _ = extract(j({"instances": [{"deep": {"a": [{"b": None}]}}]}), j({"predictions": [1]}), AUTO)
    check_features(rows[0][0])
    assert rows[0][0] == {"deep.a[0].b": None}


def test_problems_are_reported_never_raised() -> None:
    rows, err = extract(b'{"a": ', j({"prediction": 1}), AUTO)
    assert rows == [({}, None)] and "request body is not valid JSON" in err
    rows, err = extract(j({"a": 1}), b"<html>oops</html>", AUTO)
    assert rows == [({"a": 1}, None)] and "response body is not valid JSON" in err
    rows, err = extract(j({"instances": [{"a": 1}, {"a": 2}]}), j({"predictions": [1]}), AUTO)
    # which row the one prediction belongs to is unknown: none is attached to a wrong row
    assert rows == [({"a": 1}, None), ({"a": 2}, None)] and "1 predictions for 2 rows" in err
    rows, err = extract(j({"a": 1}), None, AUTO)  # upstream failed: features still logged
    assert rows == [({"a": 1}, None)] and err is None


def test_feature_count_is_capped() -> None:
    spec = ExtractSpec(max_features=10)
    assert len(flatten({"x": list(range(100))}, spec)) == 10


def test_bad_specs_fail_at_start_up() -> None:
    with pytest.raises(ConfigError):
        ExtractSpec(mode="xml")
    with pytest.raises(ConfigError, match="features_path"):
        ExtractSpec(mode="path")
    with pytest.raises(ConfigError, match="bad extraction path"):
        ExtractSpec(features_path="a..[x]")


def test_rows_come_only_from_what_the_request_holds() -> None:
    short = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    rows, err = extract(j(short), j({"outputs": [{"name": "y", "shape": [2], "datatype": "FP32",
                                                  "data": [0.1, 0.2]}]}), AUTO)
    assert rows == [({}, None)] and err == "extract: request tensor 'x': shape [2, 4] holds 8 values, data has 4"
    ragged = {"inputs": [{"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                         {"name": "b", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}
    rows, err = extract(j(ragged), None, AUTO)
    assert rows == [({}, None)] and err == "extract: request input tensors disagree on the number of rows ('a': 2, 'b': 3)"
    ok = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    rows, err = extract(j(ok), j({"outputs": [{"name": "y", "shape": [2, 1], "datatype": "FP32", "data": [7]}]}), AUTO)
    assert [p for _, p in rows] == [None, None]
    assert err == "extract: response tensor 'y': shape [2, 1] holds 2 values, data has 1"


def test_n_by_1_outputs_are_scalars_like_n_outputs() -> None:
    req = j({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[1.5], [2.5]]}]})
    kserve = j({"outputs": [{"name": "y", "shape": [2], "datatype": "INT64", "data": [0, 1]}]})
    mlserver = j({"outputs": [{"name": "y", "shape": [2, 1], "datatype": "INT64", "data": [[0], [1]]}]})
    for resp in (kserve, mlserver):
        rows, err = extract(req, resp, AUTO)
        assert err is None and rows == [({"x": 1.5}, 0), ({"x": 2.5}, 1)]
