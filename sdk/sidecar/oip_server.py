"""The Open Inference Protocol (KServe v2) side of ``driftline serve``: metadata, errors, tensor checks.

What a conforming client (tritonclient, KServe's ``InferenceRESTClient``, MLServer's types) reads:

* ``GET /v2`` -- server metadata ``{"name", "version", "extensions"}``;
* ``GET /v2/models/{name}[/versions/{v}]`` -- model metadata with ``inputs`` / ``outputs`` as tensor
  metadata ``{"name", "datatype", "shape"}`` (``-1`` for the batch dimension);
* ``GET /v2/models/{name}[/versions/{v}]/ready`` -- readiness of that model (404 for another name);
* errors as ``{"error": "<message>"}``: clients show only that string, so it names the field;
* every input tensor checked against its declared ``shape`` and ``datatype`` before the model runs.

>>> check_tensors({"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2.5]}]})
'inputs[0].data[1]: INT64 expects integers, got 2.5'
"""

from __future__ import annotations

import importlib.metadata
import math
from typing import Any

from aiohttp import web

from driftline.sdk.sidecar.input_schema import InputSchema
from driftline.sdk.sidecar.oip_binary import DATATYPES

SERVER_NAME = "driftline"
EXTENSIONS = ("binary_tensor_data",)

_INT_RANGE = {"INT8": (-2**7, 2**7 - 1), "INT16": (-2**15, 2**15 - 1), "INT32": (-2**31, 2**31 - 1),
              "INT64": (-2**63, 2**63 - 1), "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1),
              "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1)}


def error(status: int, message: str) -> web.Response:
    """An OIP error answer: ``{"error": message}`` (the only field OIP clients read)."""
    return web.json_response({"error": message}, status=status)


def server_metadata() -> dict[str, Any]:
    try:
        version = importlib.metadata.version("driftline")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def _datatype(types: tuple[str, ...]) -> str:
    kinds = set(types) - {"null"}
    if kinds == {"integer"}:
        return "INT64"
    if kinds == {"boolean"}:
        return "BOOL"
    if kinds <= {"number", "integer"} and kinds:
        return "FP64"
    return "BYTES"


def model_metadata(name: str, version: str, schema: InputSchema | None, model: Any) -> dict[str, Any]:
    """Tensor metadata: one ``[-1, 1]`` tensor per input field (a single ``[-1, k]`` tensor in field
    order is accepted too), the ``predict`` output and, for classifiers, ``predict_proba``."""
    inputs = [{"name": f.name, "datatype": _datatype(f.types), "shape": [-1, 1]}
              for f in (schema.fields if schema else ())]
    classes = getattr(model, "classes_", None)
    labels = list(classes) if classes is not None else []
    is_num = bool(labels) and all(isinstance(c, (int, float)) or type(c).__name__.startswith(("int", "float"))
                                  for c in labels)
    predict_type = "BYTES" if labels and not is_num else ("INT64" if labels else "FP64")
    outputs = [{"name": "predict", "datatype": predict_type, "shape": [-1]}]
    if callable(getattr(model, "predict_proba", None)):
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(labels) if labels else -1]})
    return {"name": name, "versions": [version] if version else [], "platform": SERVER_NAME,
            "inputs": inputs, "outputs": outputs}


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for x in data:
        out.extend(_flat(x) if isinstance(x, list) else [x])
    return out


def _element_error(datatype: str, v: Any) -> str | None:
    if datatype == "BOOL":
        return None if isinstance(v, bool) else f"BOOL expects true or false, got {v!r:.40}"
    if datatype == "BYTES":
        return None if isinstance(v, str) else f"BYTES expects strings, got {v!r:.40}"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"{datatype} expects numbers, got {v!r:.40}"
    if datatype in _INT_RANGE:
        if not isinstance(v, int):
            return f"{datatype} expects integers, got {v!r:.40}"
        lo, hi = _INT_RANGE[datatype]
        if not lo <= v <= hi:
            return f"{datatype} holds {lo}..{hi}, got {v}"
    elif not math.isfinite(v):
        return f"{datatype} expects finite numbers, got {v!r:.40}"
    return None


def check_tensors(doc: Any) -> str | None:
    """The first way ``doc["inputs"]`` breaks the protocol, naming the field; None when it conforms."""
    tensors = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(tensors, list) or not tensors:
        return "inputs: expected a non-empty list of tensors"
    for i, t in enumerate(tensors):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            return f"{where}: expected a tensor object"
        for key in ("name", "shape", "datatype", "data"):
            if key not in t:
                return f"{where}.{key}: missing"
        if not isinstance(t["name"], str) or not t["name"]:
            return f"{where}.name: expected a non-empty string"
        shape = t["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            return f"{where}.shape: expected a list of sizes, got {shape!r:.60}"
        datatype = t["datatype"]
        if datatype not in DATATYPES:
            return f"{where}.datatype: {datatype!r:.20} is not one of {', '.join(DATATYPES)}"
        data = _flat(t["data"])
        if len(data) != math.prod(shape):
            return f"{where}.data: shape {shape} holds {math.prod(shape)} values, got {len(data)}"
        for j, v in enumerate(data):
            reason = _element_error(datatype, v)
            if reason is not None:
                return f"{where}.data[{j}]: {reason}"
    return None
