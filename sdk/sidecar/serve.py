"""``driftline serve PATH``: a Python model file as an HTTP model server with every sidecar feature.

The model is a joblib or pickle file of an object with ``predict`` (and ``predict_proba`` when it
has one), or an ``.onnx`` file when onnxruntime is installed. It runs behind the sidecar's own
application as the ``local:`` upstream, so auth, rate limits, body limits, timeouts, shadows, A/B
splits, metrics and prediction events all work the same as in front of a remote server.

Endpoints: ``POST /predict`` (a flat object, a list of objects, or ``{"instances": [...]}``),
the Open Inference Protocol v2 (:mod:`~driftline.sdk.sidecar.oip_server`: ``GET /v2``,
``GET /v2/models/{name}[/versions/{v}][/ready]``, ``POST .../infer`` with JSON or binary tensors,
errors as ``{"error": "<message naming the field>"}``), ``GET /healthz``, ``GET /readyz`` (503
until the model is loaded).

Inputs are validated against an :class:`~driftline.sdk.sidecar.input_schema.InputSchema` (inferred from a
sample, from sklearn's ``feature_names_in_`` / ``n_features_in_``, or given as JSON Schema); a bad
input is answered 422 with the field named: ``instances[1].age: expected number, got string``.

Loading a pickle runs code from the file: serve only model files you trust.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from driftline.sdk.codec import to_plain
from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.app import LocalReply
from driftline.sdk.sidecar.bodies import Readable
from driftline.sdk.sidecar.extraction import Row
from driftline.sdk.sidecar.hygiene import REQ_ID, error_response
from driftline.sdk.sidecar import oip_server as oip
from driftline.sdk.sidecar.input_schema import InputSchema
from driftline.sdk.sidecar.oip_binary import BinaryTensorError, parse_binary_body

logger = logging.getLogger("driftline.sidecar")

_V2_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


class OnnxModel:
    """An ONNX model with a sklearn-like face: ``predict`` and (if it has a second output) ``predict_proba``."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError(f"{path} is an ONNX model; install onnxruntime to serve it") from None
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        width = inp.shape[-1] if len(inp.shape) >= 2 else None
        self.n_features_in_ = width if isinstance(width, int) else None
        if len(self.session.get_outputs()) > 1:  # skl2onnx classifiers: label, then probabilities
            self.predict_proba = self._predict_proba

    def _run(self, X: Any) -> list[Any]:
        import numpy as np

        return self.session.run(None, {self.input_name: np.asarray(X, dtype=np.float32)})

    def predict(self, X: Any) -> Any:
        return self._run(X)[0]

    def _predict_proba(self, X: Any) -> Any:
        return self._run(X)[1]  # a 2-D array, or a list of class->score dicts (ZipMap)


def load_model(path: str | Path) -> Any:
    """Load a joblib / pickle / ONNX model file; raises ConfigError with what to change."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model file {p} does not exist")
    if p.suffix == ".onnx":
        return OnnxModel(p)
    try:
        if p.suffix in (".joblib", ".jbl"):
            import joblib

            model = joblib.load(p)
        else:
            with open(p, "rb") as f:
                model = pickle.load(f)  # noqa: S301 - documented: serve only trusted files
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot load model file {p}: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(model, "predict", None)):
        raise ConfigError(f"{p} holds a {type(model).__name__}, which has no predict() method")
    return model


class ModelBackend:
    """The in-process model behind ``local:``; implements the sidecar's ``LocalBackend``."""

    def __init__(self, path: str | Path, *, name: str, version: str = "", schema: InputSchema | None = None,
                 model: Any = None, workers: int = 1) -> None:
        self.path = Path(path)
        self.name = name
        self.version = version
        self.schema = schema
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="driftline-model")
        self.load_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (blocking) and settle the input schema."""
        if self.model is None:
            self.model = load_model(self.path)
        if self.schema is None:
            self.schema = InputSchema.from_model(self.model)
        if self.schema is None:
            raise ConfigError(f"cannot infer the input schema of {self.path}: pass --sample sample.json "
                              "or --schema schema.json")

    async def start(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.load)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and 503s, and logged
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("driftline serve: model failed to load: %s", self.load_error)

    async def stop(self, app: web.Application) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> bool:
        return self.model is not None and self.schema is not None and self.load_error is None

    def add_routes(self, app: web.Application) -> None:
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        app.router.add_get("/v2", self._server_metadata)
        app.router.add_get("/v2/health/live", self._live)
        app.router.add_get("/v2/health/ready", self._ready)
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            app.router.add_get(base, self._metadata)
            app.router.add_get(base + "/ready", self._model_ready)

    async def _server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(oip.server_metadata())

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready()}, status=200 if self.ready() else 503)

    def _unknown_model(self, request: web.Request) -> web.Response | None:
        name, version = request.match_info.get("name"), request.match_info.get("version")
        if name != self.name:
            return oip.error(404, f"unknown model {str(name)[:64]!r}: this server serves {self.name!r}")
        if version is not None and version != self.version:
            return oip.error(404, f"model {self.name!r} has no version {version[:64]!r} "
                                  f"(it serves {self.version or 'no version'!r})")
        return None

    async def _model_ready(self, request: web.Request) -> web.Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        ready = self.ready()
        return web.json_response({"name": self.name, "ready": ready}, status=200 if ready else 503)

    async def _metadata(self, request: web.Request) -> web.Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        if not self.ready():
            return oip.error(503, self._not_ready_reason())
        return web.json_response(oip.model_metadata(self.name, self.version, self.schema, self.model))

    def _not_ready_reason(self) -> str:
        return f"model failed to load: {self.load_error}" if self.load_error else "model is loading"

    # -- requests ------------------------------------------------------------------------------
    async def handle(self, request: web.Request, readable: Readable) -> LocalReply:
        rid = request.get(REQ_ID)
        path = request.path
        match = _V2_INFER.match(path)
        if request.method != "POST" or not (path == "/predict" or match):
            return LocalReply(error_response(404, "not_found", f"no route {request.method} {path}; "
                                             "use POST /predict or POST /v2/models/{name}/infer"), None, None, 0.0)
        if match:
            return await self._handle_v2(match, readable)
        if not self.ready():
            return LocalReply(error_response(503, "not_ready", self._not_ready_reason(), request_id=rid),
                              None, None, 0.0)
        assert self.schema is not None
        if readable.error is not None or readable.data is None:
            reason = readable.error or "request body is empty"
            return LocalReply(error_response(400, "invalid_body", reason, request_id=rid), [({}, None)], reason, 0.0)
        try:
            doc = json.loads(readable.data)
        except ValueError as exc:
            return LocalReply(error_response(400, "invalid_json", f"request body is not valid JSON: {exc}",
                                             request_id=rid), [({}, None)], "request body is not valid JSON", 0.0)
        rows, single, errors = self.schema.rows_from_predict(doc)
        if errors:
            first_field, first_reason = errors[0]
            return LocalReply(error_response(422, "invalid_input", f"{first_field}: {first_reason}", request_id=rid,
                                             field=first_field, errors=[{"field": f, "reason": r}
                                                                        for f, r in errors[:50]]),
                              None, None, 0.0)
        return await self._run(rows, doc, single=single, v2=False, rid=rid)

    async def _handle_v2(self, match: re.Match[str], readable: Readable) -> LocalReply:
        """``POST /v2/models/{name}[/versions/{v}]/infer``: OIP errors ``{"error": ...}`` naming the field."""
        name, version = match.group("name"), match.group("version")
        if name != self.name or (version is not None and version != self.version):
            return LocalReply(oip.error(404, f"unknown model {name[:64]!r}"
                                        + (f" version {version[:64]!r}" if version is not None else "")
                                        + f": this server serves {self.name!r}"), None, None, 0.0)
        if not self.ready():
            return LocalReply(oip.error(503, self._not_ready_reason()), None, None, 0.0)
        assert self.schema is not None
        if readable.error is not None or readable.data is None:
            reason = f"request body: {readable.error or 'empty'}"
            return LocalReply(oip.error(400, reason), [({}, None)], reason, 0.0)
        try:
            doc = (parse_binary_body(readable.data, readable.header_len, "inputs") if readable.header_len is not None
                   else json.loads(readable.data))
        except BinaryTensorError as exc:
            reason = f"binary tensor body: {exc}"
            return LocalReply(oip.error(400, reason), [({}, None)], reason, 0.0)
        except ValueError as exc:
            reason = f"request body is not valid JSON: {exc}"
            return LocalReply(oip.error(400, reason), [({}, None)], "request body is not valid JSON", 0.0)
        problem = oip.check_tensors(doc)
        if problem is not None:
            return LocalReply(oip.error(400, problem), None, None, 0.0)
        rows, _, errors = self.schema.rows_from_v2(doc)
        if errors:
            return LocalReply(oip.error(400, f"{errors[0][0]}: {errors[0][1]}"), None, None, 0.0)
        return await self._run(rows, doc, single=False, v2=True, rid=None)

    async def _run(self, rows: list[dict[str, Any]], doc: Any, *, single: bool, v2: bool,
                   rid: str | None) -> LocalReply:
        start = time.perf_counter()
        try:
            labels, probas, classes = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._predict, rows)
        except Exception as exc:  # noqa: BLE001 - a model bug is the caller's 500, not a crash
            model_s = time.perf_counter() - start
            msg = f"{type(exc).__name__}: {exc}"[:500]
            answer = oip.error(500, f"model raised {msg}") if v2 else error_response(500, "model_error", msg,
                                                                                     request_id=rid)
            return LocalReply(answer, [(r, None) for r in rows], f"model raised {msg}", model_s)
        model_s = time.perf_counter() - start
        events: list[Row] = []
        for i, row in enumerate(rows):
            pred = probas[i] if probas is not None else labels[i]
            events.append((row, pred))
        if v2:
            out = self._v2_response(doc, labels, probas, classes)
        elif single:
            out = {"prediction": labels[0]} | ({"probabilities": probas[0]} if probas is not None else {})
        else:
            out = {"predictions": labels} | ({"probabilities": probas} if probas is not None else {})
        return LocalReply(web.json_response(out), events, None, model_s)

    def _predict(self, rows: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, float]] | None, list[str]]:
        assert self.schema is not None
        X = self.schema.to_matrix(rows, self.model)
        labels = [to_plain(x) for x in to_plain(self.model.predict(X))]
        probas = None
        classes: list[str] = []
        if callable(getattr(self.model, "predict_proba", None)):
            raw = to_plain(self.model.predict_proba(X))
            if raw and isinstance(raw[0], dict):
                probas = [{str(k): float(v) for k, v in r.items()} for r in raw]
                classes = list(probas[0])
            else:
                names = to_plain(getattr(self.model, "classes_", None)) or list(range(len(raw[0])))
                classes = [str(c) for c in names]
                probas = [dict(zip(classes, map(float, r))) for r in raw]
        return labels, probas, classes

    def _v2_response(self, doc: Any, labels: list[Any], probas: list[dict[str, float]] | None,
                     classes: list[str]) -> dict[str, Any]:
        n = len(labels)
        is_num = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in labels)
        dtype = ("INT64" if all(isinstance(x, int) for x in labels) else "FP64") if is_num else "BYTES"
        outputs = [{"name": "predict", "shape": [n], "datatype": dtype,
                    "data": labels if is_num else [str(x) for x in labels]}]
        if probas is not None:
            outputs.append({"name": "predict_proba", "shape": [n, len(classes)], "datatype": "FP64",
                            "data": [p[c] for p in probas for c in classes]})
        out: dict[str, Any] = {"model_name": self.name, "outputs": outputs}
        if self.version:
            out["model_version"] = self.version
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            out["id"] = doc["id"]
        return out
