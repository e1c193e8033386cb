"""``driftline serve``: a model file behind the sidecar app, with validation and v2."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import joblib
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression

from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.app import SERVER_OPTIONS, build_app
from driftline.sdk.sidecar.config import SidecarSettings
from driftline.sdk.sidecar.input_schema import InputSchema
from driftline.sdk.sidecar.metrics import SidecarMetrics
from driftline.sdk.sidecar.serve import ModelBackend, load_model

from .testkit import Sink, closed_port, serve_app


class Doubler:
    """A plain object with predict only (pickled by reference: importable from this module)."""

    def predict(self, X: Any) -> Any:
        return [float(row[0]) * 2 for row in np.asarray(X)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.uniform(18, 80, 200), "income": rng.uniform(0, 10, 200)})
    y = (X["age"] / 80 + X["income"] / 10 > 1).astype(int)
    path = tmp_path_factory.mktemp("models") / "churn.joblib"
    joblib.dump(LogisticRegression().fit(X, y), path)
    return str(path)


@asynccontextmanager
async def served(path: str, schema: InputSchema | None = None, model: Any = None,
                 **overrides: Any) -> AsyncIterator[tuple[str, Sink]]:
    sink = Sink()
    settings = SidecarSettings(upstream="local:", model="churn", version="3", access_log=False, **overrides)
    backend = ModelBackend(path, name="churn", version="3", schema=schema, model=model)
    app = build_app(settings, monitor_factory=sink.factory("churn"), metrics=SidecarMetrics(CollectorRegistry()),
                    local=backend)
    try:
        async with serve_app(app, **SERVER_OPTIONS) as url:
            async with aiohttp.ClientSession() as s:
                for _ in range(200):  # the model loads in the background; /readyz says when
                    if (await s.get(url + "/readyz")).status == 200:
                        break
                    time.sleep(0.01)
            yield url, sink
    finally:
        sink.close()


async def test_predict_single_and_batch_with_probabilities_and_events(model_file: str) -> None:
    async with served(model_file) as (url, sink):
        async with aiohttp.ClientSession() as s:
            assert (await s.get(url + "/healthz")).status == 200
            r = await s.post(url + "/predict", json={"age": 75, "income": 9.0}, headers={"X-Request-Id": "one"})
            body = await r.json()
            assert r.status == 200 and body["prediction"] == 1
            assert set(body["probabilities"]) == {"0", "1"} and body["probabilities"]["1"] > 0.5
            r = await s.post(url + "/predict", json={"instances": [{"age": 20, "income": 0.5}, [79, 9.5]]})
            body = await r.json()
            assert body["predictions"] == [0, 1] and len(body["probabilities"]) == 2
        events = await sink.events()
    assert len(events) == 3
    assert events[0]["features"] == {"age": 75, "income": 9.0} and events[0]["request_id"] == "one"
    assert events[0]["model_version"] == "3" and events[0]["prediction"]["1"] > 0.5
    assert events[2]["features"] == {"age": 79, "income": 9.5}  # list row mapped by feature_names_in_


async def test_invalid_input_is_a_422_that_names_the_field(model_file: str) -> None:
    async with served(model_file) as (url, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"age": "old", "income": 1})
            body = await r.json()
            assert r.status == 422 and body["field"] == "age" and body["message"] == "age: expected number, got string"
            r = await s.post(url + "/predict", json={"instances": [{"age": 1, "income": 1}, {"age": 2}]})
            body = await r.json()
            assert r.status == 422 and body["errors"] == [{"field": "instances[1].income", "reason": "missing"}]
            r = await s.post(url + "/predict", json={"age": 1, "income": 1, "zip": "0150"})
            assert r.status == 422 and (await r.json())["field"] == "zip"
            r = await s.post(url + "/predict", data=b"{nope")
            assert r.status == 400 and (await r.json())["error"] == "invalid_json"
            r = await s.post(url + "/nothing", json={})
            assert r.status == 404
        events = await sink.events()
    assert len(events) == 1 and events[0]["status"] == "error"  # the malformed JSON is logged; 422s are not


async def test_v2_infer_metadata_and_health(model_file: str) -> None:
    async with served(model_file) as (url, sink):
        async with aiohttp.ClientSession() as s:
            req = {"id": "x1", "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64",
                                          "data": [[20, 0.5], [79, 9.5]]}]}
            r = await s.post(url + "/v2/models/churn/infer", json=req)
            body = await r.json()
            assert r.status == 200 and body["id"] == "x1" and body["model_name"] == "churn"
            assert body["outputs"][0] == {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}
            assert body["outputs"][1]["shape"] == [2, 2]
            per_field = {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [30]},
                                    {"name": "income", "shape": [1], "datatype": "FP64", "data": ["x"]}]}
            r = await s.post(url + "/v2/models/churn/infer", json=per_field)
            assert r.status == 400 and await r.json() == {"error": "inputs[1].data[0]: FP64 expects numbers, got 'x'"}
            r = await s.post(url + "/v2/models/other/infer", json=req)
            assert r.status == 404 and await r.json() == {"error": "unknown model 'other': this server serves 'churn'"}
            meta = await (await s.get(url + "/v2/models/churn")).json()
            assert meta == {"name": "churn", "versions": ["3"], "platform": "driftline",
                            "inputs": [{"name": "age", "datatype": "FP64", "shape": [-1, 1]},
                                       {"name": "income", "datatype": "FP64", "shape": [-1, 1]}],
                            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                                        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}]}
            assert await (await s.get(url + "/v2/models/churn/versions/3")).json() == meta
            assert (await s.get(url + "/v2/health/ready")).status == 200
        events = await sink.events()
    assert [e["features"] for e in events] == [{"age": 20, "income": 0.5}, {"age": 79, "income": 9.5}]


async def test_json_schema_and_sample_schemas(tmp_path) -> None:
    path = tmp_path / "doubler.pkl"
    path.write_bytes(pickle.dumps(Doubler()))
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps({"type": "object", "required": ["x"], "additionalProperties": False,
                                       "properties": {"x": {"type": "number", "minimum": 0, "maximum": 100},
                                                      "unit": {"enum": ["cm", "m"]}}}))
    schema = InputSchema.load(schema_path=str(schema_file))
    async with served(str(path), schema=schema) as (url, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"x": 21})
            assert r.status == 200 and await r.json() == {"prediction": 42.0}
            r = await s.post(url + "/predict", json={"x": 101})
            assert r.status == 422 and (await r.json())["message"] == "x: must be <= 100"
            r = await s.post(url + "/predict", json={"x": 1, "unit": "km"})
            assert r.status == 422 and (await r.json())["field"] == "unit"
    sample = InputSchema.from_sample([{"x": 1.5, "note": "a"}, {"x": 2, "note": None}])
    assert [(f.name, f.types, f.required) for f in sample.fields] == [
        ("x", ("number",), True), ("note", ("string", "null"), True)]
    with pytest.raises(ConfigError, match="unsupported JSON Schema keyword"):
        InputSchema.from_json_schema({"type": "object", "properties": {"x": {}}, "oneOf": []})
    with pytest.raises(ConfigError, match="unsupported keyword"):
        InputSchema.from_json_schema({"properties": {"x": {"pattern": "^a"}}})


async def test_model_errors_are_500s_and_a_slow_model_is_a_504(tmp_path) -> None:
    class Broken:
        n_features_in_ = 1

        def predict(self, X: Any) -> Any:
            raise ValueError("boom")

    async with served(str(tmp_path / "unused"), model=Broken()) as (url, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"f0": 1})
            assert r.status == 500 and (await r.json())["message"] == "ValueError: boom"
        events = await sink.events()
    assert events[0]["status"] == "error" and "boom" in events[0]["error"]

    import threading
    gate = threading.Event()

    class Slow:
        n_features_in_ = 1

        def predict(self, X: Any) -> Any:
            gate.wait(10)
            return [1]

    async with served(str(tmp_path / "unused"), model=Slow(), timeout_s=0.2) as (url, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"f0": 1})
            assert r.status == 504 and (await r.json())["error"] == "model_timeout"
        gate.set()


def test_load_model_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "missing.joblib")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ConfigError, match="no predict"):
        load_model(bad)


def test_onnx_model_when_onnxruntime_is_installed(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # y = X @ W: a 2-input linear model built by hand (no converter needed)
    w = helper.make_tensor("W", TensorProto.FLOAT, [2, 1], [1.0, 10.0])
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "lin",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])], [w])
    path = tmp_path / "lin.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = load_model(path)
    assert model.n_features_in_ == 2 and not hasattr(model, "predict_proba")
    schema = InputSchema.from_model(model)
    assert schema is not None and schema.names == ["f0", "f1"]
    assert model.predict(schema.to_matrix([{"f0": 1, "f1": 2}], model)).tolist() == [[21.0]]


def test_serve_command_runs_the_server(model_file: str, tmp_path) -> None:
    port = closed_port()
    env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"}
    proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", "serve", model_file, "--model", "churn",
                             "--port", str(port), "--no-access-log"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "serve did not become ready"
                time.sleep(0.1)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=b'{"age": 70, "income": 9}',
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["prediction"] == 1
    finally:
        proc.terminate()
        proc.wait(20)


async def test_v2_server_metadata_readiness_per_model_and_errors_that_name_the_field(model_file: str) -> None:
    def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
        return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}

    async with served(model_file) as (url, sink):
        async with aiohttp.ClientSession() as s:
            meta = await (await s.get(url + "/v2")).json()
            assert meta["name"] == "driftline" and meta["extensions"] == ["binary_tensor_data"] and meta["version"]
            r = await s.get(url + "/v2/models/churn/ready")
            assert r.status == 200 and await r.json() == {"name": "churn", "ready": True}
            assert (await s.get(url + "/v2/models/churn/versions/3/ready")).status == 200
            r = await s.get(url + "/v2/models/other/ready")
            assert r.status == 404 and "unknown model 'other'" in (await r.json())["error"]
            r = await s.get(url + "/v2/models/churn/versions/9/ready")
            assert r.status == 404 and await r.json() == {"error": "model 'churn' has no version '9' (it serves '3')"}
            for body, message in [
                (tensor("input-0", [2, 2], "FP64", [1.0, 2.0]), "inputs[0].data: shape [2, 2] holds 4 values, got 2"),
                (tensor("age", [2], "INT64", [30, 2.5]), "inputs[0].data[1]: INT64 expects integers, got 2.5"),
                (tensor("age", [1], "INT8", [300]), "inputs[0].data[0]: INT8 holds -128..127, got 300"),
                (tensor("age", [1], "FP128", [1.0]), "inputs[0].datatype: 'FP128' is not one of BOOL"),
                ({"inputs": [{"name": "age", "shape": [1], "data": [1]}]}, "inputs[0].datatype: missing"),
                ({"inputs": []}, "inputs: expected a non-empty list of tensors"),
            ]:
                r = await s.post(url + "/v2/models/churn/infer", json=body)
                got = await r.json()
                assert r.status == 400 and list(got) == ["error"] and got["error"].startswith(message), got
        events = await sink.events()
    assert events == []  # refused requests are not predictions


async def test_v2_binary_tensors_are_served(model_file: str) -> None:
    head = json.dumps({"inputs": [
        {"name": "age", "shape": [2, 1], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
        {"name": "income", "shape": [2, 1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}).encode()
    body = head + struct.pack("<2d", 20.0, 79.0) + struct.pack("<2f", 0.5, 9.5)
    async with served(model_file) as (url, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/v2/models/churn/infer", data=body,
                             headers={"Inference-Header-Content-Length": str(len(head))})
            out = await r.json()
            assert r.status == 200 and out["outputs"][0]["data"] == [0, 1]
            r = await s.post(url + "/v2/models/churn/infer", data=body[:-4],
                             headers={"Inference-Header-Content-Length": str(len(head))})
            assert r.status == 400 and await r.json() == {
                "error": "binary tensor body: tensor 'income': 8 bytes announced, 4 left in the body"}
        events = await sink.events()
    assert [(e["features"], e["status"]) for e in events[:2]] == [({"age": 20.0, "income": 0.5}, "ok"),
                                                                  ({"age": 79.0, "income": 9.5}, "ok")]
    assert events[2]["status"] == "error" and "8 bytes announced" in events[2]["error"]
