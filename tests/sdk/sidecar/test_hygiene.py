"""Serving hygiene: bearer tokens, per-token rate limits, body limits before the body is read, access log."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH
from driftline.sdk.sidecar.hygiene import AccessLogger, TokenAuth, load_tokens

from .testkit import ModelServer, serve_app, sidecar

ALICE, BOB, OPS = "alice-" + "a" * 20, "bob-" + "b" * 20, "ops-" + "o" * 20


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_load_tokens_from_env_and_file(tmp_path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# team tokens\nbob:{BOB}\n")
    tokens = load_tokens(env={"T": f"alice:{ALICE}, {OPS}"}, env_var="T", path=f)
    assert tokens == {"alice": ALICE, "token2": OPS, "bob": BOB}
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_tokens(env={"T": "x:short"}, env_var="T", path=None)
    with pytest.raises(ConfigError, match="appears twice"):
        load_tokens(env={"T": f"a:{ALICE},a:{BOB}"}, env_var="T", path=None)


def test_token_auth_matches_any_configured_token() -> None:
    auth = TokenAuth({"alice": ALICE, "bob": BOB})
    assert auth.check(f"Bearer {BOB}") == "bob" and auth.check(f"bearer {ALICE}") == "alice"
    assert auth.check(f"Bearer {ALICE}x") is None and auth.check(ALICE) is None and auth.check(None) is None


async def test_bearer_tokens_on_predict_and_admin_endpoints() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up, tokens={"alice": ALICE, "bob": BOB},
                                                      admin_tokens={"ops": OPS}) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", json={"a": 1})
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"] == "unauthorized"
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE + "x"))).status == 401
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE))).status == 200
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(BOB))).status == 200
            assert (await s.get(url + "/admin/split", headers=bearer(ALICE))).status == 401
            assert (await s.get(url + "/admin/split", headers=bearer(OPS))).status == 200
            assert (await s.get(url + "/healthz")).status == 200
        events = await sink.events()
    assert len(model.calls) == 2 and len(events) == 2
    # the sidecar's own token is not forwarded to the model server
    assert all("Authorization" not in c["headers"] for c in model.calls)


async def test_rate_limit_per_token_answers_429_with_retry_after() -> None:
    now = [1000.0]
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up, tokens={"alice": ALICE, "bob": BOB}, rate_limit_rps=0.5,
                                                      rate_limit_burst=2, clock=lambda: now[0]) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            statuses = [(await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE))).status
                        for _ in range(2)]
            r = await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE))
            assert statuses == [200, 200] and r.status == 429
            assert r.headers["Retry-After"] == "2"
            assert (await r.json())["error"] == "rate_limited"
            # another token has its own bucket
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(BOB))).status == 200
            now[0] += 2.0  # one token refilled
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE))).status == 200
            assert (await s.post(url + "/predict", json={"a": 1}, headers=bearer(ALICE))).status == 429
            text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
    assert len(model.calls) == 4
    assert 'driftline_sidecar_requests_total{status="429",variant="none"} 2.0' in text


async def _raw(url: str, head: bytes, body_part: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body_part)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return data


async def test_oversized_body_is_refused_with_413_before_it_is_read() -> None:
    model = ModelServer()
    async with serve_app(model.app()) as up, sidecar(up, max_body_bytes=100) as (url, sc, sink):
        async with aiohttp.ClientSession() as s:
            r = await s.post(url + "/predict", data=b"x" * 1000)
            assert r.status == 413 and (await r.json())["limit_bytes"] == 100

            async def chunks():  # no Content-Length: the streamed read stops at the cap
                for _ in range(50):
                    yield b"y" * 64

            r = await s.post(url + "/predict", data=chunks())
            assert r.status == 413
            assert (await s.post(url + "/predict", json={"a": 1})).status == 200
        # Only the headers and 10 of 100000 declared bytes are sent: the answer still comes.
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        assert (await _raw(url, head, b"0123456789")).startswith(b"HTTP/1.1 413")
        expect = head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
        assert (await _raw(url, expect)).startswith(b"HTTP/1.1 413")
    assert len(model.calls) == 1


async def test_access_log_has_no_payload_query_or_secret(caplog) -> None:
    model = ModelServer()
    caplog.set_level(logging.INFO, logger="driftline.sidecar.access")
    async with serve_app(model.app()) as up, sidecar(up, tokens={"alice": ALICE}) as (url, sc, sink):
        app_runner_kw = {"access_log_class": AccessLogger, "access_log": logging.getLogger("driftline.sidecar.access")}
        from prometheus_client import CollectorRegistry

        from driftline.sdk.sidecar.app import build_app  # a second app on the same settings, with the access log
        from driftline.sdk.sidecar.metrics import SidecarMetrics

        app = build_app(sc.settings, monitor_factory=sink.factory("m"), metrics=SidecarMetrics(CollectorRegistry()))
        async with serve_app(app, **app_runner_kw) as url2:
            async with aiohttp.ClientSession() as s:
                r = await s.post(url2 + "/predict?email=jane@example.com", json={"ssn": "123-45-6789"},
                                 headers={**bearer(ALICE), "X-Request-Id": "rid-7"})
                assert r.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "driftline.sidecar.access"]
    assert len(lines) == 1
    line = lines[0]
    assert "POST /predict 200" in line and "token=alice" in line and "variant=primary" in line
    assert "request_id=rid-7" in line
    for secret in ("jane@example.com", "123-45-6789", ALICE, "ssn"):
        assert secret not in line
