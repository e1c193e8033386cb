"""Shadows through the running sidecar: the caller never depends on a shadow."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiohttp
from aiohttp import web

from driftline.sdk.contract.variants import pair_key, role_of
from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH, ShadowTarget, parse_shadow

from .testkit import ModelServer, closed_port, serve_app, sidecar


async def test_slow_shadow_does_not_delay_the_caller_and_is_logged_with_the_same_request_id() -> None:
    primary, shadow = ModelServer("p"), ModelServer("s", offset=100.0)
    shadow.hang.set()  # the shadow blocks until released
    async with serve_app(primary.app()) as up, serve_app(shadow.app()) as sh, \
            sidecar(up, shadows=(ShadowTarget("shadow", sh),)) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            for i in range(3):
                r = await s.post(url + "/predict", json={"a": i}, headers={"X-Request-Id": f"r{i}"})
                assert r.status == 200 and await r.json() == {"prediction": float(i)}
            # every caller got its answer while all three shadow calls are still hanging
            await asyncio.sleep(0)
            assert sc.shadow is not None and sc.shadow.in_flight == 3
            shadow.release.set()
            for _ in range(200):
                if sc.shadow.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
        events = await sink.events()
    by_variant: dict[str, dict[str, float]] = {}
    for e in events:
        by_variant.setdefault(e["variant"], {})[e["request_id"]] = e["prediction"]
    assert by_variant["primary"] == {"r0": 0.0, "r1": 1.0, "r2": 2.0}
    assert by_variant["shadow"] == {"r0": 100.0, "r1": 101.0, "r2": 102.0}
    assert json.loads(shadow.calls[0]["body"]) == {"a": 0}


def failing_app() -> web.Application:
    async def boom(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text="shadow exploded")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", boom)
    return app


async def test_failing_and_unreachable_shadows_change_nothing_for_the_caller() -> None:
    primary = ModelServer("p")
    async with serve_app(primary.app()) as up, serve_app(failing_app()) as fl:
        shadows = (ShadowTarget("broken", fl), ShadowTarget("gone", f"http://127.0.0.1:{closed_port()}"))
        async with sidecar(up, shadows=shadows) as (url, sc, sink):
            async with aiohttp.ClientSession() as s:
                for i in range(2):
                    r = await s.post(url + "/predict", json={"a": 5 + i})
                    assert r.status == 200 and await r.json() == {"prediction": 5.0 + i}
                for _ in range(200):
                    if sc.shadow.in_flight == 0:
                        break
                    await asyncio.sleep(0.02)
                text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
            events = await sink.events()
    assert 'driftline_sidecar_shadow_errors_total{reason="connect",shadow="gone"} 2.0' in text
    assert 'driftline_sidecar_shadow_errors_total{reason="http_5xx",shadow="broken"} 2.0' in text
    shadow_events = [e for e in events if e["variant"] in ("shadow:broken", "shadow:gone")]
    assert len(shadow_events) == 4 and all(e["status"] == "error" for e in shadow_events)
    assert {e["error"] for e in shadow_events if e["variant"] == "shadow:broken"} == {"shadow answered HTTP 500"}
    primary_events = [e for e in events if e["variant"] == "primary"]
    assert [e["prediction"] for e in primary_events] == [5.0, 6.0]
    assert all(e["status"] == "ok" for e in primary_events)


async def test_shadow_sampling_and_concurrency_bound() -> None:
    primary, shadow = ModelServer("p"), ModelServer("s")
    shadow.hang.set()
    async with serve_app(primary.app()) as up, serve_app(shadow.app()) as sh, \
            sidecar(up, shadows=(ShadowTarget("shadow", sh),), shadow_concurrency=2) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            for i in range(5):
                assert (await s.post(url + "/predict", json={"a": i})).status == 200
            await asyncio.sleep(0)
            assert sc.shadow.in_flight == 2  # three skipped, none queued
            shadow.release.set()
            text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
    assert 'driftline_sidecar_shadow_requests_total{outcome="skipped_busy",shadow="shadow"} 3.0' in text

    async with serve_app(primary.app()) as up, serve_app(ModelServer("s2").app()) as sh, \
            sidecar(up, shadows=(ShadowTarget("shadow", sh),), shadow_sample=0.0) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            assert (await s.post(url + "/predict", json={"a": 1})).status == 200
            assert sc.shadow.in_flight == 0
            text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
    assert 'driftline_sidecar_shadow_requests_total{outcome="skipped_sample",shadow="shadow"} 1.0' in text


async def test_a_named_shadow_is_a_shadow_with_its_own_version_and_rows_paired_by_index() -> None:
    primary, shadow = ModelServer("p"), ModelServer("s", offset=100.0)
    target = parse_shadow("candidate=http://placeholder:1@v2", 0)
    async with serve_app(primary.app()) as up, serve_app(shadow.app()) as sh, \
            sidecar(up, shadows=(replace(target, url=sh),)) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"instances": [{"a": 1}, {"a": 2}]}, headers={"X-Request-Id": "q"})
            assert await r.json() == {"predictions": [1.0, 2.0]}
            r = await s.post(url + "/predict", json={"a": 5}, headers={"X-Request-Id": "one"})
            assert await r.json() == {"prediction": 5.0}
            for _ in range(200):
                if sc.shadow.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
        events = await sink.events()
    assert sorted((role_of(e["variant"]), e["variant"], e["model_version"], pair_key(e["request_id"], e["tags"]),
                   e["prediction"]) for e in events) == [
        ("primary", "primary", "1", "one|", 5.0),
        ("primary", "primary", "1", "q|0", 1.0),
        ("primary", "primary", "1", "q|1", 2.0),
        ("shadow", "shadow:candidate", "v2", "one|", 105.0),
        ("shadow", "shadow:candidate", "v2", "q|0", 101.0),
        ("shadow", "shadow:candidate", "v2", "q|1", 102.0),
    ]
