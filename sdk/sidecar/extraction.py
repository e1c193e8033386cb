"""Map request/response bodies of a model server to features and predictions, one pair per row.

Shapes understood out of the box (``mode="auto"`` picks one from the request body):

* a flat JSON object ``{"age": 41, "plan": "pro"}`` -- one row; nested objects and lists are
  flattened to dotted / indexed names (``address.city``, ``x[0]``);
* ``{"instances": [...]}`` (TF Serving, KServe v1) -- one row per instance; the response's
  ``predictions`` list gives one prediction per row;
* Open Inference Protocol v2 ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` -- rows along
  the first dimension of each tensor; the response's ``outputs`` give the predictions;
* anything else through dotted paths: ``features_path="payload.rows"`` and
  ``prediction_path="result.scores"`` (a path that ends on a list makes a batch).

Rows given as lists are named ``f0, f1, ...`` unless ``feature_names`` is configured.

>>> spec = ExtractSpec()
>>> rows, err = extract(b'{"instances": [{"a": 1}, {"a": 2}]}', b'{"predictions": [0.1, 0.9]}', spec)
>>> rows, err
([({'a': 1}, 0.1), ({'a': 2}, 0.9)], None)

Nothing here raises: a body that cannot be mapped gives rows with what could be read and an
error string for the event (``extract: ...``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from driftline.sdk.codec import loads_as_stdlib
from driftline.sdk.contract.schema import SCALAR_TYPES, positional_feature
from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.oip_binary import BinaryTensorError, parse_binary_body

MODES = ("auto", "flat", "instances", "v2", "path")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PREDICTION_KEYS = ("predictions", "prediction", "outputs", "output", "result", "results", "scores",
                    "score", "probabilities", "label", "labels", "class", "y")

Row = tuple[dict[str, Any], Any]


@dataclass(frozen=True)
class ExtractSpec:
    """How to read features and predictions.

    ``mode``: ``auto`` (detect), ``flat``, ``instances``, ``v2`` or ``path``.
    ``features_path`` / ``prediction_path``: dotted paths (``a.b[0].c``) used by ``path`` mode
    and, when given, in any mode in preference to detection.
    ``prediction_output``: the v2 output to log (default: the first one).
    ``feature_names``: names for positional (list) rows.
    ``max_features``: a row is cut after this many flattened features (schema limit 10000).
    """

    mode: str = "auto"
    features_path: str | None = None
    prediction_path: str | None = None
    prediction_output: str | None = None
    feature_names: tuple[str, ...] = ()
    max_features: int = 2_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"extract mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.mode == "path" and not self.features_path:
            raise ConfigError("extract mode 'path' needs features_path (e.g. --features-path payload.rows)")
        for p in (self.features_path, self.prediction_path):
            if p is not None:
                parse_path(p)
        if not 1 <= self.max_features <= 10_000:
            raise ConfigError("max_features must be between 1 and 10000")


def parse_path(path: str) -> list[str | int]:
    """``"a.b[2].c"`` -> ``["a", "b", 2, "c"]``; raises ConfigError on an empty or bad path."""
    parts: list[str | int] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        m = _SEGMENT.match(text, pos)
        if not m:
            raise ConfigError(f"bad extraction path {path!r} at position {pos}; use a.b[0].c")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts:
        raise ConfigError(f"empty extraction path {path!r}")
    return parts


_MISSING = object()


def get_path(obj: Any, path: str) -> Any:
    """Follow a dotted path; returns ``None`` when any step is missing."""
    for part in parse_path(path):
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return None
            obj = obj[part]
        else:
            if not isinstance(obj, dict) or part not in obj:
                return None
            obj = obj[part]
    return obj


def flatten(value: Any, spec: ExtractSpec, prefix: str = "") -> dict[str, Any]:
    """One row to a flat ``name -> scalar`` mapping (the schema's shape for features)."""
    limit = spec.max_features
    if not prefix and type(value) is dict and len(value) <= limit:
        # The common row, already flat (named scalars): a copy, as walk() below would make it.
        scalars = SCALAR_TYPES
        for k, v in value.items():
            if type(v) not in scalars or type(k) is not str or not k:
                break
        else:
            return dict(value)
    out: dict[str, Any] = {}

    def walk(v: Any, name: str) -> None:
        if len(out) >= limit:
            return
        if v is None or isinstance(v, (str, bool, int, float)):
            out[name or "value"] = v
        elif isinstance(v, dict):
            for k, inner in v.items():
                walk(inner, f"{name}.{k}" if name else str(k))
        elif isinstance(v, list):
            for i, inner in enumerate(v):
                if not name and i < len(spec.feature_names):
                    walk(inner, spec.feature_names[i])
                else:
                    walk(inner, f"{name}[{i}]" if name else positional_feature(i))
        else:
            out[name or "value"] = str(v)

    walk(value, prefix)
    return out


def _prediction_value(v: Any) -> Any:
    """Coerce to what the schema accepts: scalar, list (of lists) of scalars, or class->score."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, list):
        if all(x is None or isinstance(x, (str, bool, int, float)) for x in v):
            return v
        if all(isinstance(x, list) and all(y is None or isinstance(y, (str, bool, int, float)) for y in x)
               for x in v):
            return v
        return json.dumps(v, separators=(",", ":"))[:10_000]
    if isinstance(v, dict):
        for key in _PREDICTION_KEYS:  # a wrapper such as {"prediction": ...} first
            if key in v:
                return _prediction_value(v[key])
        if v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values()):
            return {str(k): x for k, x in v.items()}  # class -> score
        return json.dumps(v, separators=(",", ":"))[:10_000]
    return str(v)


# -- v2 (Open Inference Protocol) ------------------------------------------------------------
def _is_v2(inputs: Any) -> bool:
    return isinstance(inputs, list) and bool(inputs) and all(
        isinstance(t, dict) and "name" in t and "data" in t for t in inputs)


def _flat_data(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if any(isinstance(x, list) for x in data):
        out: list[Any] = []
        for x in data:
            out.extend(_flat_data(x))
        return out
    return data


# Internal control flow, not in the error tree (sdk/errors.py): always caught in extract(), which
# turns it into the event's error string; it never reaches users.
class _Mismatch(ValueError):
    """The request or response does not add up (shape against data): logged as one error event."""


def _v2_rows(tensor: dict[str, Any]) -> list[Any]:
    """Split one v2 tensor into rows along its first dimension; a row of one element is that element.

    Raises :class:`_Mismatch` when the declared shape and the data disagree: rows are only ever
    cut from what the tensor really holds.
    """
    flat = _flat_data(tensor.get("data"))
    name = str(tensor.get("name"))[:64]
    shape = tensor.get("shape")
    if shape is None:
        shape = [len(flat)]
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                      for d in shape)):
        raise _Mismatch(f"tensor {name!r}: shape {shape!r:.64} is not a list of sizes")
    total = math.prod(shape)
    if total != len(flat):
        raise _Mismatch(f"tensor {name!r}: shape {shape} holds {total} values, data has {len(flat)}")
    n = shape[0]
    per = total // n if n else 0
    if per == 1:
        return list(flat)  # [n] and [n, 1] alike: one scalar per row
    return [flat[i * per:(i + 1) * per] for i in range(n)]


def _v2_features(inputs: list[dict[str, Any]], spec: ExtractSpec) -> list[dict[str, Any]]:
    columns = [(t["name"], _v2_rows(t)) for t in inputs]
    sizes = {len(rows) for _, rows in columns}
    if len(sizes) > 1:
        counts = ", ".join(f"{str(name)[:64]!r}: {len(rows)}" for name, rows in columns)
        raise _Mismatch(f"input tensors disagree on the number of rows ({counts})")
    n = sizes.pop()
    out: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {}
        for name, rows in columns:
            value = rows[i]
            if isinstance(value, list) and len(columns) == 1 and spec.feature_names:
                row.update(flatten(value, spec))
            elif isinstance(value, list) and len(value) == 1:
                row[str(name)] = value[0]
            else:
                row.update(flatten(value, spec, str(name)))
        out.append(row)
    return out


def _v2_predictions(body: Any, spec: ExtractSpec) -> list[Any] | None:
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not _is_v2(outputs):
        return None
    chosen = outputs[0]
    if spec.prediction_output:
        chosen = next((t for t in outputs if t.get("name") == spec.prediction_output), None)
        if chosen is None:
            return None
    return _v2_rows(chosen)


# -- the entry point -----------------------------------------------------------------------------
def _loads(body: bytes | str | None, header_len: int | None = None,
           tensors_key: str = "inputs") -> tuple[Any, str | None]:
    if body is None or body == b"" or body == "":
        return _MISSING, None
    if header_len is not None and isinstance(body, bytes):
        try:
            return parse_binary_body(body, header_len, tensors_key), None
        except BinaryTensorError as exc:
            return _MISSING, f"not a valid binary tensor body: {exc}"
    try:
        return loads_as_stdlib(body), None
    except (ValueError, UnicodeDecodeError) as exc:
        return _MISSING, f"not valid JSON ({type(exc).__name__})"


def _feature_rows(req: Any, spec: ExtractSpec) -> tuple[list[dict[str, Any]], bool, str | None]:
    """Feature rows, whether the request was a batch, and an error."""
    mode = spec.mode
    if spec.features_path:
        target = get_path(req, spec.features_path)
        if target is None:
            return [{}], False, f"features_path {spec.features_path!r} not found"
        if isinstance(target, list) and target and all(isinstance(r, (dict, list)) for r in target):
            return [flatten(r, spec) for r in target], True, None
        return [flatten(target, spec)], False, None
    if isinstance(req, dict):
        if mode in ("auto", "v2") and _is_v2(req.get("inputs")):
            return _v2_features(req["inputs"], spec), True, None
        if mode in ("auto", "instances"):
            for key in ("instances", "inputs"):  # TF Serving's row format uses either key
                rows = req.get(key)
                if isinstance(rows, list):
                    return [flatten(r, spec) for r in rows], True, None
        if mode == "v2":
            return [{}], False, "request has no v2 'inputs' tensors"
        if mode == "instances":
            return [{}], False, "request has no 'instances' list"
        return [flatten(req, spec)], False, None
    if isinstance(req, list) and mode in ("auto", "instances") and all(isinstance(r, (dict, list)) for r in req):
        return [flatten(r, spec) for r in req], True, None
    return [flatten(req, spec)], False, None


def _predictions(resp: Any, spec: ExtractSpec, batch: bool, n: int) -> tuple[list[Any] | None, Any]:
    """Per-row predictions if the response is row-shaped, else one whole-response value."""
    if spec.prediction_path:
        target = get_path(resp, spec.prediction_path)
        if batch and isinstance(target, list):
            return target, None
        return None, target
    v2 = _v2_predictions(resp, spec)
    if v2 is not None:
        return v2, None
    if isinstance(resp, dict):
        for key in ("predictions", "outputs", "results"):
            if isinstance(resp.get(key), list) and (batch or n > 1):
                return resp[key], None
    if isinstance(resp, list) and batch:
        return resp, None
    return None, resp


def extract(request_body: bytes | str | None, response_body: bytes | str | None, spec: ExtractSpec, *,
            request_header_len: int | None = None,
            response_header_len: int | None = None) -> tuple[list[Row], str | None]:
    """Rows of (features, prediction) and an error string (``None`` when all went well).

    ``response_body=None`` means there was no usable response (an upstream error): rows carry
    ``prediction=None``. ``request_header_len`` / ``response_header_len`` are the
    ``Inference-Header-Content-Length`` of an Open Inference Protocol binary body
    (:mod:`~driftline.sdk.sidecar.oip_binary`). Rows come only from what the request holds: when
    it does not add up (a tensor's shape against its data, inputs of different batch sizes) the
    result is one row without features and the reason, never rows made up to fit.
    """
    try:
        req, req_err = _loads(request_body, request_header_len, "inputs")
        if req_err:
            return [({}, None)], f"extract: request body is {req_err}"
        if req is _MISSING:
            req = {}
        feats, batch, err = _feature_rows(req, spec)
        if response_body is None:
            return [(f, None) for f in feats], err and f"extract: {err}"
        resp, resp_err = _loads(response_body, response_header_len, "outputs")
        if resp_err:
            return [(f, None) for f in feats], f"extract: response body is {resp_err}"
        if resp is _MISSING:
            return [(f, None) for f in feats], err and f"extract: {err}"
        try:
            per_row, whole = _predictions(resp, spec, batch, len(feats))
        except _Mismatch as exc:
            return [(f, None) for f in feats], f"extract: response {exc}"
        if per_row is not None:
            if len(per_row) != len(feats):
                err = err or f"response has {len(per_row)} predictions for {len(feats)} rows"
                if len(feats) == 1:
                    return [(feats[0], _prediction_value(per_row))], f"extract: {err}"
                return [(f, None) for f in feats], f"extract: {err}"
            return [(f, _prediction_value(p)) for f, p in zip(feats, per_row)], err and f"extract: {err}"
        value = _prediction_value(whole)
        return [(f, value) for f in feats], err and f"extract: {err}"
    except _Mismatch as exc:
        return [({}, None)], f"extract: request {exc}"
    except Exception as exc:  # noqa: BLE001 - extraction must never break the request path
        return [({}, None)], f"extract: failed ({type(exc).__name__})"
