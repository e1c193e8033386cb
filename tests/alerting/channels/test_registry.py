"""Every registered channel renders and sends exactly what the per-channel functions did before
``alerting/channels/`` existed: ``golden.json`` and ``wire.json`` were recorded from those
functions (and the old ``Deliverer``) for the fixed incidents in ``incidents_fixture.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from driftline.alerting import store
from driftline.alerting.channels import CHANNELS, channel_for
from driftline.alerting.channels.webhook import render_retrain
from driftline.alerting.delivery import Deliverer, HttpResult
from driftline.alerting.metrics import AlertMetrics
from driftline.alerting.outbox import Outbox
from driftline.alerting.rules import CHANNEL_TYPES, ChannelConfig, Secret
from tests.alerting.channels.incidents_fixture import CHANNEL, TEST_ISO, TEST_KEY, alerts

HERE = Path(__file__).parent

GOLDEN = json.loads((HERE / "golden.json").read_text())
WIRE = json.loads((HERE / "wire.json").read_text())


def test_public_surface():
    import driftline.alerting.channels as channels

    assert channels.__all__ == ["CHANNELS", "Channel", "Transport", "channel_for"]


def test_registry_covers_every_configurable_type():
    assert tuple(CHANNELS) == CHANNEL_TYPES
    assert all(c.type == t for t, c in CHANNELS.items())
    with pytest.raises(KeyError, match="known: slack, pagerduty, webhook, email"):
        channel_for("sms")


@pytest.mark.parametrize("event", sorted(GOLDEN["alerts"]))
@pytest.mark.parametrize("channel_type", sorted(CHANNELS))
def test_render_is_unchanged(channel_type: str, event: str):
    alert = alerts()[event]
    key = f"ch:{alert.dedup_key}:{alert.event}"
    assert channel_for(channel_type).render(alert, key) == GOLDEN["alerts"][event][channel_type]


@pytest.mark.parametrize("channel_type", sorted(CHANNELS))
def test_render_test_is_unchanged(channel_type: str):
    body = channel_for(channel_type).render_test(CHANNEL, TEST_KEY, TEST_ISO)
    assert body == GOLDEN["test"][channel_type]


@pytest.mark.parametrize("event", sorted(GOLDEN["alerts"]))
def test_retrain_request_and_history_row_are_unchanged(event: str):
    alert = alerts()[event]
    key = f"ch:{alert.dedup_key}:{alert.event}"
    assert render_retrain(alert, key) == GOLDEN["retrain"][event]
    assert store.history_row(alert, key, ("a", "b")) == GOLDEN["history"][event]


CONFIGS = {
    "slack": ChannelConfig(name="s", type="slack", url=Secret("http://127.0.0.1:9/hook")),
    "pagerduty": ChannelConfig(name="p", type="pagerduty", url=Secret("http://127.0.0.1:9/pd"),
                               routing_key=Secret("RK123")),
    "webhook": ChannelConfig(name="w", type="webhook", url=Secret("http://127.0.0.1:9/w"),
                             secret=Secret("whsec")),
    "email": ChannelConfig(name="m", type="email", smtp_host="127.0.0.1", sender="a@x.io",
                           to=("b@x.io",)),
}


@pytest.mark.parametrize("channel_type", sorted(CHANNELS))
def test_bytes_on_the_wire_are_unchanged(channel_type: str, tmp_path: Path):
    ch = CONFIGS[channel_type]
    sent: list[dict[str, Any]] = []

    def post(target, body, headers, timeout_s):  # type: ignore[no-untyped-def]
        sent.append({"path": target.path, "body": body.decode(), "headers": headers,
                     "timeout_s": timeout_s})
        return HttpResult(200, {}, b"")

    def smtp(config: ChannelConfig, body: dict[str, Any], key: str) -> None:
        sent.append({"channel": config.name, "body": body, "key": key})

    outbox = Outbox(tmp_path / "outbox.sqlite3")
    d = Deliverer(outbox, {ch.name: ch}, AlertMetrics(CollectorRegistry()),
                  clock=lambda: 1772325600.5, allow_local=True, post=post, smtp_send=smtp)
    key = f"{ch.name}:driftline-x:firing"
    outbox.enqueue(key, ch.name, channel_type, GOLDEN["alerts"]["firing"][channel_type],
                   1772325600.0)
    assert d.deliver_due() == 1
    outbox.close()
    assert sent == [WIRE[channel_type]]
    if "headers" in sent[0]:  # header order is part of the request, too (wire.json sorts keys)
        assert list(sent[0]["headers"])[:3] == ["Content-Type", "User-Agent", "Idempotency-Key"]
