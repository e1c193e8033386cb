"""The sidecar as a reverse proxy: pass-through, events per row, streams, timeouts, bad input."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import zlib

import aiohttp
import pytest
from aiohttp import web

from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH

from .testkit import ModelServer, closed_port, serve_app, sidecar


async def test_flat_request_passes_through_and_becomes_one_event() -> None:
    model = ModelServer(name="m1")
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/predict?x=1", json={"age": 40, "income": 2.5, "plan": "pro"},
                              headers={"X-Request-Id": "req-1"}) as r:
                assert r.status == 200
                assert r.headers["X-Served-By"] == "m1"
                assert await r.json() == {"prediction": 42.5}
        events = await sink.events()
    assert len(events) == 1
    e = events[0]
    assert e["model"] == "m" and e["model_version"] == "1" and e["variant"] == "primary"
    assert e["features"] == {"age": 40, "income": 2.5, "plan": "pro"}
    assert e["prediction"] == 42.5 and e["status"] == "ok" and e["error"] is None
    assert e["request_id"] == "req-1" and e["latency_ms"] > 0
    # the upstream saw the query string and the request id
    assert model.calls[0]["headers"]["X-Request-Id"] == "req-1"


async def test_instances_batch_gives_one_event_per_row_with_a_shared_request_id() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"instances": [{"a": 1}, {"a": 2}, {"a": 3, "b": 1}]})
            assert (await r.json()) == {"predictions": [1.0, 2.0, 4.0]}
        events = await sink.events()
    assert [e["features"] for e in events] == [{"a": 1}, {"a": 2}, {"a": 3, "b": 1}]
    assert [e["prediction"] for e in events] == [1.0, 2.0, 4.0]
    assert len({e["request_id"] for e in events}) == 1
    assert len({e["event_id"] for e in events}) == 3


async def test_open_inference_v2_rows_and_outputs() -> None:
    model = ModelServer()
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/v2/models/iris/infer", json=body)
            assert r.status == 200
            assert (await r.json())["outputs"][0]["data"] == [6.0, 15.0]
        events = await sink.events()
    assert [e["features"] for e in events] == [{"x[0]": 1, "x[1]": 2, "x[2]": 3}, {"x[0]": 4, "x[1]": 5, "x[2]": 6}]
    assert [e["prediction"] for e in events] == [6.0, 15.0]


async def test_upstream_error_status_and_headers_pass_through_unchanged() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/status/418", data=b"{}")
            assert r.status == 418 and await r.text() == "status 418" and r.headers["X-Upstream"] == "yes"
            r = await s.get(url + "/status/404")  # GETs are proxied but not logged as predictions
            assert r.status == 404 and await r.text() == "status 404"
        events = await sink.events()
    assert len(events) == 1
    assert events[0]["status"] == "error" and events[0]["error"] == "upstream answered HTTP 418"
    assert events[0]["tags"] == {"http_status": "418"}


async def test_malformed_json_is_forwarded_and_logged_with_a_reason() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", data=b'{"age": 4', headers={"Content-Type": "application/json"})
            assert r.status == 400 and await r.json() == {"error": "bad json"}  # the upstream's own answer
        events = await sink.events()
    assert model.calls[0]["body"] == b'{"age": 4'
    assert len(events) == 1 and events[0]["status"] == "error"
    assert events[0]["features"] == {} and events[0]["prediction"] is None


async def test_streamed_response_is_passed_through_as_a_stream() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/stream", json={"q": 1}) as r:
                assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
                # Part 1 arrives while the upstream is still blocked before part 2: a buffering proxy
                # would never deliver it and this read would time out.
                first = await asyncio.wait_for(r.content.readline(), timeout=10)
                assert first == b'{"part": 1}\n'
                model.release.set()
                assert await r.content.read() == b'{"part": 2}\n'
        events = await sink.events()
    assert len(events) == 1 and events[0]["status"] == "ok" and events[0]["features"] == {"q": 1}


async def test_gzip_response_passes_unchanged_and_is_decoded_for_the_event() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession(auto_decompress=False) as s:
            r = await s.post(url + "/gzip", json={"a": 2, "b": 3}, headers={"Accept-Encoding": "gzip"})
            assert r.headers["Content-Encoding"] == "gzip"
            assert json.loads(gzip.decompress(await r.read())) == {"prediction": 5.0}
        events = await sink.events()
    assert events[0]["prediction"] == 5.0


async def test_upstream_timeout_is_a_clear_504() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up, timeout_s=0.3) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/slow", json={"a": 1}, headers={"X-Request-Id": "slow-1"})
            body = await r.json()
        model.release.set()
        events = await sink.events()
    assert r.status == 504
    assert body["error"] == "upstream_timeout" and "0.3 s" in body["message"] and body["request_id"] == "slow-1"
    assert events[0]["status"] == "error" and "did not answer" in events[0]["error"]


async def test_unreachable_upstream_is_a_502_and_the_sidecar_stays_up() -> None:
    async with sidecar(f"http://127.0.0.1:{closed_port()}") as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"a": 1})
            assert r.status == 502 and (await r.json())["error"] == "upstream_unavailable"
            r = await s.get(url + "/healthz")
            assert r.status == 200
        events = await sink.events()
    assert events[0]["status"] == "error" and events[0]["features"] == {"a": 1}


async def test_metrics_count_requests_by_variant_and_status() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                await (await s.post(url + "/predict", json={"a": 1})).read()
            await (await s.post(url + "/status/503", data=b"{}")).read()
            await sink.events()
            text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
    assert 'driftline_sidecar_requests_total{status="200",variant="primary"} 3.0' in text
    assert 'driftline_sidecar_requests_total{status="503",variant="primary"} 1.0' in text
    assert "driftline_sidecar_upstream_seconds_count{variant=\"primary\"} 4.0" in text
    assert "driftline_sidecar_overhead_seconds_count 4.0" in text
    assert "driftline_sidecar_exporter_queue_depth 0.0" in text
    assert 'driftline_sidecar_exporter_dropped_total{reason="queue_full"} 0.0' in text
    assert "driftline_sidecar_exporter_exported_total 4.0" in text


async def test_compressed_request_bodies_reach_the_upstream_byte_for_byte() -> None:
    # A recording upstream that does not inflate (it sees the wire bytes) and an ordinary one that
    # does (as MLServer and KServe do): the first proves the bytes, the second that servers accept them.
    recorder, model = ModelServer("raw"), ModelServer("model")
    payload = json.dumps({"instances": [{"a": 1}, {"a": 2, "b": 3}]}).encode()
    bodies = {"gzip": gzip.compress(payload), "deflate": zlib.compress(payload)}
    async with serve_app(recorder.app(), auto_decompress=False) as raw, serve_app(model.app()) as up:
        for upstream in (raw, up):
            async with sidecar(upstream) as (url, sc, sink):
                async with aiohttp.ClientSession() as s:
                    for coding, body in bodies.items():
                        r = await s.post(url + "/predict", data=body, headers={
                            "Content-Encoding": coding, "Content-Type": "application/json"})
                        if upstream == up:
                            assert r.status == 200 and await r.json() == {"predictions": [1.0, 5.0]}
                events = await sink.events()
            assert [e["features"] for e in events] == [{"a": 1}, {"a": 2, "b": 3}] * 2
            if upstream == up:
                assert [e["prediction"] for e in events] == [1.0, 5.0] * 2
                assert all(e["status"] == "ok" and e["error"] is None for e in events)
    assert [c["body"] for c in recorder.calls] == list(bodies.values())
    assert [c["headers"]["Content-Encoding"] for c in recorder.calls] == list(bodies)
    assert [int(c["headers"]["Content-Length"]) for c in recorder.calls] == [len(b) for b in bodies.values()]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_with_a_gzip_body_and_compressed_answer() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--compressed", "-D", "-", "-H", "Content-Encoding: gzip",
            "-H", "Content-Type: application/json", "--data-binary", "@-", url + "/gzip",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(gzip.compress(b'{"a": 2, "b": 3}'))
        events = await sink.events()
    head, _, text = out.decode().partition("\r\n\r\n")
    assert proc.returncode == 0 and head.startswith("HTTP/1.1 200")
    assert "content-encoding: gzip" in head.lower()  # the upstream's compressed answer, untouched
    assert json.loads(text) == {"prediction": 5.0}
    assert [(e["features"], e["prediction"], e["status"]) for e in events] == [({"a": 2, "b": 3}, 5.0, "ok")]


async def test_shape_and_data_that_disagree_give_one_error_event_not_invented_rows() -> None:
    model = ModelServer()
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    async with serve_app(model.app()) as up, sidecar(up) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/v2/models/iris/infer", json=body)
            assert r.status == 200  # a lenient server answers two rows; the request holds four values
        events = await sink.events()
    assert len(events) == 1
    assert events[0]["status"] == "error" and events[0]["features"] == {} and events[0]["prediction"] is None
    assert events[0]["error"] == "extract: request tensor 'x': shape [2, 4] holds 8 values, data has 4"


def metrics_upstream() -> web.Application:
    async def own_metrics(request: web.Request) -> web.Response:
        return web.Response(text="kserve_model_requests_total 7\n")

    app = web.Application()
    app.router.add_get("/metrics", own_metrics)
    return app


async def test_the_upstreams_metrics_stay_reachable_beside_the_sidecars_own() -> None:
    async with serve_app(metrics_upstream()) as up:
        async with sidecar(up) as (url, sc, sink), aiohttp.ClientSession() as s:
            assert await (await s.get(url + "/metrics")).text() == "kserve_model_requests_total 7\n"
            own = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
            assert "driftline_sidecar_requests_total" in own  # the GET /metrics above, counted
        port = closed_port()
        async with sidecar(up, metrics_path="/m", metrics_port=port) as (url, sc, sink), \
                aiohttp.ClientSession() as s:
            assert await (await s.get(url + "/metrics")).text() == "kserve_model_requests_total 7\n"
            assert (await s.get(url + "/m")).status == 404  # proxied: the upstream has no /m
            own = await (await s.get(f"http://127.0.0.1:{port}/m")).text()
            assert 'driftline_sidecar_requests_total{status="404",variant="primary"} 1.0' in own
