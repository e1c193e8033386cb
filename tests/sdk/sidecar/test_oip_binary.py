"""The Open Inference Protocol binary tensor extension, on bodies tritonclient[http] really produced.

``fixtures/oip_binary.json`` holds requests captured from tritonclient's ``InferenceServerClient.infer``
(plain, gzip and deflate compressed) and a binary response that tritonclient decodes back to the
arrays stored beside it; ``fixtures/make_oip_binary.py`` regenerates it. No tritonclient is needed here.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from driftline.sdk.contract.schema import check_features, check_prediction
from driftline.sdk.sidecar.extraction import ExtractSpec, extract
from driftline.sdk.sidecar.oip_binary import BinaryTensorError, decode_tensor, parse_binary_body

from .testkit import serve_app, sidecar

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "oip_binary.json").read_text())
RESPONSE = base64.b64decode(FIXTURE["response"]["body_b64"])
RESPONSE_HEADERS = FIXTURE["response"]["headers"]
RESPONSE_HEAD = int(RESPONSE_HEADERS["Inference-Header-Content-Length"])
CASES = {c["name"]: c for c in FIXTURE["requests"]}


def _body(case: dict[str, Any]) -> bytes:
    raw = base64.b64decode(case["request"]["body_b64"])
    coding = case["request"]["headers"].get("Content-Encoding")
    return {"gzip": gzip.decompress, "deflate": zlib.decompress}.get(coding, lambda b: b)(raw)


def expected_rows(tensors: dict[str, Any]) -> list[dict[str, Any]]:
    """Row i of every tensor, named as extraction names them: ``x``, or ``x[j]`` for wider rows."""
    n = next(iter(tensors.values()))["shape"][0]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, t in tensors.items():
        for i, value in enumerate(t["data"]):
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, list):
                rows[i].update({f"{name}[{j}]": v for j, v in enumerate(value)})
            else:
                rows[i][name] = value
    return rows


def expected_predictions(output: str) -> list[Any]:
    return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in FIXTURE["outputs"][output]["data"]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_tritonclient_requests_of_every_datatype_become_their_rows(name: str) -> None:
    case = CASES[name]
    head = int(case["request"]["headers"]["Inference-Header-Content-Length"])
    rows, err = extract(_body(case), RESPONSE, ExtractSpec(), request_header_len=head,
                        response_header_len=RESPONSE_HEAD)
    assert err is None
    assert [f for f, _ in rows] == expected_rows(FIXTURE["inputs"])
    assert [p for _, p in rows] == expected_predictions("label") == [2, 0, 1]
    assert {FIXTURE["inputs"][k]["datatype"] for k in FIXTURE["inputs"]} == {
        "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64",
        "BYTES"}
    for features, prediction in rows:
        check_features(features)
        check_prediction(prediction)


@pytest.mark.parametrize("output", ["proba", "name", "score"])
def test_each_binary_output_can_be_the_prediction(output: str) -> None:
    case = CASES["all_types_plain"]
    head = int(case["request"]["headers"]["Inference-Header-Content-Length"])
    rows, err = extract(_body(case), RESPONSE, ExtractSpec(prediction_output=output), request_header_len=head,
                        response_header_len=RESPONSE_HEAD)
    assert err is None and [p for _, p in rows] == expected_predictions(output)


def test_decode_tensor_reads_little_endian_and_length_prefixed_bytes() -> None:
    assert decode_tensor(struct.pack("<3?", True, False, True), "BOOL", [3], "b") == [True, False, True]
    assert decode_tensor(struct.pack("<2e", 0.5, -2.0), "FP16", [2], "h") == [0.5, -2.0]
    assert decode_tensor(struct.pack("<2Q", 2**64 - 1, 0), "UINT64", [1, 2], "u") == [2**64 - 1, 0]
    assert decode_tensor(b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00\xff", "BYTES", [3], "s") == [
        "ab", "", "\\xff"]


@pytest.mark.parametrize(("tensor", "raw", "message"), [
    ({"datatype": "FP32", "shape": [2]}, b"\x00" * 4, "tensor 'x': 4 bytes for shape [2] of FP32 (8 expected)"),
    ({"datatype": "BF17", "shape": [1]}, b"\x00" * 2, "tensor 'x': datatype 'BF17' is not one of BOOL"),
    ({"datatype": "BYTES", "shape": [1]}, b"\x09\x00\x00\x00abc", "BYTES element of 9 bytes runs past the tensor"),
    ({"datatype": "BYTES", "shape": [2]}, b"\x01\x00\x00\x00a", "tensor 'x': 1 elements for shape [2] (2 expected)"),
    ({"datatype": "INT8", "shape": "2"}, b"\x00\x00", "shape '2' is not a list of sizes"),
])
def test_bodies_that_do_not_add_up_name_the_tensor(tensor: dict[str, Any], raw: bytes, message: str) -> None:
    head = json.dumps({"inputs": [{"name": "x", **tensor, "parameters": {"binary_data_size": len(raw)}}]}).encode()
    with pytest.raises(BinaryTensorError) as info:
        parse_binary_body(head + raw, len(head), "inputs")
    assert message in str(info.value)
    rows, err = extract(head + raw, None, ExtractSpec(), request_header_len=len(head))
    assert rows == [({}, None)] and err is not None and message in err


def test_announced_sizes_must_match_the_body() -> None:
    head = json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [2],
                                   "parameters": {"binary_data_size": 2}}]}).encode()
    with pytest.raises(BinaryTensorError, match="2 bytes announced, 1 left"):
        parse_binary_body(head + b"\x01", len(head), "inputs")
    with pytest.raises(BinaryTensorError, match="1 bytes after the last binary tensor"):
        parse_binary_body(head + b"\x01\x02\x03", len(head), "inputs")
    with pytest.raises(BinaryTensorError, match="is 999 but the body has"):
        parse_binary_body(head, 999, "inputs")
    with pytest.raises(BinaryTensorError, match="in shared memory"):
        shm = json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1],
                                      "parameters": {"shared_memory_region": "r0"}}]}).encode()
        parse_binary_body(shm, len(shm), "inputs")


class BinaryUpstream:
    """Answers every infer with the fixture's binary response; records the wire bytes it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []

    def app(self) -> web.Application:
        async def infer(request: web.Request) -> web.Response:
            self.calls.append((dict(request.headers), await request.read()))
            return web.Response(body=RESPONSE, headers=RESPONSE_HEADERS)

        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", infer)
        return app


async def test_binary_requests_pass_through_the_sidecar_untouched_and_become_events() -> None:
    upstream = BinaryUpstream()
    async with serve_app(upstream.app(), auto_decompress=False) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            for case in FIXTURE["requests"]:
                sent = base64.b64decode(case["request"]["body_b64"])
                async with s.post(url + case["path"], data=sent, headers=case["request"]["headers"]) as r:
                    assert r.status == 200 and await r.read() == RESPONSE
                    assert r.headers["Inference-Header-Content-Length"] == str(RESPONSE_HEAD)
        events = await sink.events()
    for (headers, received), case in zip(upstream.calls, FIXTURE["requests"], strict=True):
        assert received == base64.b64decode(case["request"]["body_b64"])
        assert {k: headers.get(k) for k in case["request"]["headers"]} == case["request"]["headers"]
    assert len(events) == 3 * len(FIXTURE["requests"])
    assert [e["features"] for e in events] == expected_rows(FIXTURE["inputs"]) * len(FIXTURE["requests"])
    assert [e["prediction"] for e in events] == [2, 0, 1] * len(FIXTURE["requests"])
    assert all(e["status"] == "ok" and e["error"] is None for e in events)


async def test_a_truncated_binary_request_is_one_error_event_with_the_reason() -> None:
    upstream = BinaryUpstream()
    case = CASES["all_types_plain"]
    async with serve_app(upstream.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            await (await s.post(url + case["path"], data=_body(case)[:-5], headers=case["request"]["headers"])).read()
        events = await sink.events()
    assert len(events) == 1
    e = events[0]
    assert e["status"] == "error" and e["features"] == {} and e["prediction"] is None
    assert e["error"] == ("extract: request body is not a valid binary tensor body: "
                          "tensor 's': 24 bytes announced, 19 left in the body")
