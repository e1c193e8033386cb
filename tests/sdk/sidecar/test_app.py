"""The sidecar application's own routes and lifecycle: A/B splits changed through ``/admin/split``
and a watched split file, both without a restart."""

from __future__ import annotations

import asyncio

import aiohttp

from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH
from driftline.sdk.sidecar.routing import SplitConfig

from .testkit import ModelServer, serve_app, sidecar


async def test_ab_split_sticky_header_and_weight_change_through_the_admin_endpoint() -> None:
    a, b = ModelServer("a"), ModelServer("b", offset=1000.0)
    async with serve_app(a.app()) as ua, serve_app(b.app()) as ub:
        split = SplitConfig.parse({"sticky_header": "X-User", "variants": [
            {"name": "control", "upstream": ua, "weight": 50},
            {"name": "canary", "upstream": ub, "weight": 50, "version": "2"}]})
        async with sidecar(ua, split=split) as (url, sc, sink):
            async with aiohttp.ClientSession() as s:
                served: dict[str, set[str]] = {}
                for user in range(40):
                    for _ in range(2):
                        r = await s.post(url + "/predict", json={"a": 1}, headers={"X-User": f"u{user}"})
                        served.setdefault(f"u{user}", set()).add(r.headers["X-Served-By"])
                assert all(len(v) == 1 for v in served.values())  # sticky
                assert {next(iter(v)) for v in served.values()} == {"a", "b"}  # both arms used
                # rollback of the canary: weight 0, no restart
                r = await s.put(url + "/admin/split", json={"weights": {"canary": 0}})
                assert r.status == 200 and (await r.json())["generation"] == 1
                for user in range(40):
                    r = await s.post(url + "/predict", json={"a": 1}, headers={"X-User": f"u{user}"})
                    assert r.headers["X-Served-By"] == "a"
                r = await s.put(url + "/admin/split", json={"weights": {"nope": 1}})
                assert r.status == 400 and "unknown variant" in (await r.json())["message"]
                r = await s.put(url + "/admin/split", json={"weights": {"control": 0}})
                assert r.status == 400  # would leave no traffic anywhere
            events = await sink.events()
    canary = [e for e in events if e["variant"] == "canary"]
    control = [e for e in events if e["variant"] == "control"]
    assert canary and all(e["model_version"] == "2" and e["prediction"] == 1001.0 for e in canary)
    assert control and all(e["model_version"] == "1" for e in control)
    assert len(canary) + len(control) == 120


async def test_split_file_is_watched_and_reloaded(tmp_path) -> None:
    a, b = ModelServer("a"), ModelServer("b")
    async with serve_app(a.app()) as ua, serve_app(b.app()) as ub:
        f = tmp_path / "split.yaml"
        f.write_text(f"variants:\n  - {{name: blue, upstream: '{ua}', weight: 1}}\n"
                     f"  - {{name: green, upstream: '{ub}', weight: 0}}\n")
        async with sidecar(ua, split_file=str(f), split_poll_s=0.05) as (url, sc, sink):
            async with aiohttp.ClientSession() as s:
                assert (await s.post(url + "/predict", json={})).headers["X-Served-By"] == "a"
                f.write_text(f"variants:\n  - {{name: blue, upstream: '{ua}', weight: 0}}\n"
                             f"  - {{name: green, upstream: '{ub}', weight: 1}}\n")
                for _ in range(200):
                    if sc.router.generation >= 1:
                        break
                    await asyncio.sleep(0.02)
                assert (await s.post(url + "/predict", json={})).headers["X-Served-By"] == "b"
                f.write_text("variants: [{name: blue, upstream: 'ftp://x'}]\n")  # bad: keeps the last good split
                for _ in range(200):
                    if sc.watcher.errors:
                        break
                    await asyncio.sleep(0.02)
                assert (await s.post(url + "/predict", json={})).headers["X-Served-By"] == "b"
                text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
    assert "driftline_sidecar_split_reload_errors_total 1.0" in text


def test_the_sidecar_counts_a_client_its_versions_share_once() -> None:
    from prometheus_client import CollectorRegistry

    from driftline.sdk import Client, InMemoryExporter, Monitor, SdkSettings
    from driftline.sdk.sidecar.app import SidecarKey, build_app
    from driftline.sdk.sidecar.config import SidecarSettings
    from driftline.sdk.sidecar.metrics import SidecarMetrics

    client = Client(SdkSettings(), exporter=InMemoryExporter())
    registry = CollectorRegistry()
    app = build_app(SidecarSettings(upstream="http://127.0.0.1:9", model="churn"),
                    monitor_factory=lambda v: Monitor("churn", v, client=client), metrics=SidecarMetrics(registry))
    sc = app[SidecarKey]
    for version in ("1", "2", "3"):
        sc.events.builder.monitor(version).log({"x": 1}, 1)
    assert client.flush(5)
    assert registry.get_sample_value("driftline_sidecar_exporter_exported_total") == 3
    client.shutdown(1)
