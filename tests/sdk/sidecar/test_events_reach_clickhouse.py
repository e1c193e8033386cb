"""End to end: sidecar (A/B split + shadow) -> Tansu -> collector -> embedded ClickHouse,
with the broker paused (SIGSTOP) for part of the traffic."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from driftline.sdk import Monitor, SdkSettings
from driftline.sdk.sidecar.app import SERVER_OPTIONS, build_app
from driftline.sdk.sidecar.config import ShadowTarget, SidecarSettings
from driftline.sdk.sidecar.metrics import SidecarMetrics
from driftline.sdk.sidecar.routing import SplitConfig
from tests.conftest import unique_topics, wait_for

from .testkit import ModelServer, serve_app

pytestmark = pytest.mark.integration


async def test_sidecar_events_reach_clickhouse_through_the_embedded_stack(
        broker: Any, kafka_bootstrap: str, ch_client: Any, collector_factory: Any) -> None:
    topics = unique_topics("sc")
    collector_factory(topics)
    model = f"sidecar-{uuid.uuid4().hex[:6]}"
    sdk = SdkSettings(kafka_bootstrap=kafka_bootstrap, topics=topics, flush_interval_s=0.05)
    monitors: list[Monitor] = []

    def factory(version: str) -> Monitor:
        monitors.append(Monitor(model, version, settings=sdk))
        return monitors[-1]

    control, canary, shadow = ModelServer("control"), ModelServer("canary", 1000.0), ModelServer("shadow", 100.0)
    async with serve_app(control.app()) as uc, serve_app(canary.app()) as uk, serve_app(shadow.app()) as us:
        split = SplitConfig.parse({"sticky_header": "X-User", "variants": [
            {"name": "control", "upstream": uc, "weight": 70},
            {"name": "canary", "upstream": uk, "weight": 30, "version": "2"}]})
        settings = SidecarSettings(upstream=uc, model=model, version="1", access_log=False,
                                   shadows=(ShadowTarget("shadow", us),))
        app = build_app(settings, monitor_factory=factory, metrics=SidecarMetrics(CollectorRegistry()), split=split)
        sent: dict[str, float] = {}
        async with serve_app(app, **SERVER_OPTIONS) as url, aiohttp.ClientSession() as s:
            async def call(i: int) -> None:
                rid = f"{model}-r{i}"
                r = await s.post(url + "/predict", json={"a": i, "b": 0.5}, headers={"X-Request-Id": rid,
                                                                                   "X-User": f"u{i % 17}"})
                assert r.status == 200
                sent[rid] = (await r.json())["prediction"]

            for i in range(20):
                await call(i)
            broker.pause()  # Kafka stops answering: predictions must keep flowing
            try:
                for i in range(20, 40):
                    await call(i)
                await asyncio.sleep(0.3)
                assert all(m.stats().dropped_total == 0 for m in monitors)
            finally:
                broker.resume()
            for _ in range(200):
                if app_shadow_idle(app):
                    break
                await asyncio.sleep(0.02)
    for m in monitors:
        assert await asyncio.to_thread(m.flush, 60), m.stats()
        assert m.stats().dropped_total == 0
        m.close(5)

    def rows() -> list[tuple]:
        return ch_client.query(
            "SELECT request_id, variant, model_version, prediction_num, features_num['a'], status "
            "FROM driftline.predictions WHERE model = %(m)s", parameters={"m": model}).result_rows

    got = wait_for(lambda: (r := rows()) and len(r) >= 80 and r, timeout_s=120)
    assert len(got) == 80  # 40 primary-side events + 40 shadow events, each stored once
    by_request: dict[str, dict[str, tuple]] = {}
    for rid, variant, version, pred, a, status in got:
        by_request.setdefault(rid, {})[variant] = (version, pred, a, status)
    assert set(by_request) == set(sent)
    arms = set()
    for rid, variants in by_request.items():
        assert "shadow" in variants and len(variants) == 2
        arm = next(v for v in variants if v != "shadow")
        arms.add(arm)
        version, pred, a, status = variants[arm]
        assert status == "ok" and pred == sent[rid]
        assert version == ("2" if arm == "canary" else "1")
        assert pred == a + 0.5 + (1000.0 if arm == "canary" else 0.0)
        assert variants["shadow"][1] == a + 0.5 + 100.0  # shadow output paired by request id
    assert arms == {"control", "canary"}


def app_shadow_idle(app: Any) -> bool:
    from driftline.sdk.sidecar.app import SidecarKey

    sc = app[SidecarKey]
    return sc.shadow is None or sc.shadow.in_flight == 0
