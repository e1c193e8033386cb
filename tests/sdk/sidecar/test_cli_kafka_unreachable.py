"""Kafka down: the `driftline sidecar` command keeps serving, events queue within their bound, drops are counted.

The events are built in the sidecar's event worker process, whose counts reach the sidecar's metrics
with its next report (every 0.25 s): the test reads the metrics until they account for the requests."""

from __future__ import annotations

import asyncio
import os
import re

import aiohttp

from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH

from .testkit import ModelServer, closed_port, serve_app, start_sidecar_command, wait_ready


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert m, f"{name} not in metrics"
    return float(m.group(1))


async def test_sidecar_command_serves_with_kafka_unreachable_and_counts_drops() -> None:
    model = ModelServer()
    port = closed_port()
    env = {**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}", "DRIFTLINE_QUEUE_SIZE": "5",
           "DRIFTLINE_BATCH_SIZE": "5"}
    async with serve_app(model.app()) as up:
        proc = await start_sidecar_command(up, port, "--model", "m", env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                await wait_ready(s, url, proc)
                statuses = []
                for i in range(30):
                    r = await s.post(url + "/predict", json={"a": i})
                    statuses.append(r.status)
                    assert await r.json() == {"prediction": float(i)}
                assert statuses == [200] * 30
                for _ in range(600):  # a busy machine may take seconds to start the worker
                    text = await (await s.get(url + DEFAULT_METRICS_PATH)).text()
                    if _metric(text, 'driftline_sidecar_exporter_dropped_total{reason="queue_full"}') >= 20:
                        break
                    await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
    depth = _metric(text, "driftline_sidecar_exporter_queue_depth")
    dropped = _metric(text, 'driftline_sidecar_exporter_dropped_total{reason="queue_full"}')
    exported = _metric(text, "driftline_sidecar_exporter_exported_total")
    # bounded: at most one queue (5) plus one batch awaiting retry (5); everything else counted
    assert exported == 0 and depth <= 10 and dropped >= 20
    # ExporterStats does not show the batch the worker holds while a send attempt is in flight (<= 5)
    assert 25 <= depth + dropped <= 30
    assert b"dropped" in out  # the shutdown line says what was lost
