"""The Slack channel: Block Kit with the outbox key as the reference, posted as JSON."""

from __future__ import annotations

import json

from driftline.alerting.channels.slack import TOP_FEATURES, SlackChannel
from driftline.alerting.rules import ChannelConfig, Secret
from tests.alerting.channels.fake_transport import RecordingTransport
from tests.alerting.channels.incidents_fixture import alerts


def test_reference_top_features_and_post():
    alert = alerts()["firing"]
    body = SlackChannel().render(alert, "s:k:firing")
    text = json.dumps(body, ensure_ascii=False)
    assert "ref `s:k:firing`" in text and f"…and {len(alert.features) - TOP_FEATURES} more" in text
    t = RecordingTransport()
    SlackChannel().send(ChannelConfig(name="s", type="slack", url=Secret("http://x/")), body,
                        "s:k:firing", t)
    ((name, data, headers),) = t.posts
    assert name == "s" and json.loads(data) == body
    assert headers["Idempotency-Key"] == "s:k:firing"
