"""The webhook channel: CloudEvents, signed at send time with the transport's clock."""

from __future__ import annotations

import json

from driftline.alerting.channels.webhook import WebhookChannel, render_retrain
from driftline.alerting.rules import ChannelConfig, Secret
from driftline.alerting.signing import SIGNATURE_HEADER, verify_signature
from tests.alerting.channels.fake_transport import RecordingTransport
from tests.alerting.channels.incidents_fixture import alerts


def test_signed_with_the_secret_at_send_time():
    cfg = ChannelConfig(name="w", type="webhook", url=Secret("http://x/"), secret=Secret("whsec"))
    body = render_retrain(alerts()["firing"], "w:k:retrain")
    t = RecordingTransport(now=1_772_325_600.0)
    WebhookChannel().send(cfg, body, "w:k:retrain", t)
    ((name, data, headers),) = t.posts
    assert name == "w" and json.loads(data) == body
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["Idempotency-Key"] == "w:k:retrain" == body["id"]
    assert verify_signature("whsec", data, headers[SIGNATURE_HEADER], now=1_772_325_610.0)
    assert not verify_signature("whsec", data, headers[SIGNATURE_HEADER], now=1_772_326_000.0)


def test_unsigned_without_a_secret():
    cfg = ChannelConfig(name="w", type="webhook", url=Secret("http://x/"))
    t = RecordingTransport()
    WebhookChannel().send(cfg, {"id": "k"}, "k", t)
    assert SIGNATURE_HEADER not in t.posts[0][2]
