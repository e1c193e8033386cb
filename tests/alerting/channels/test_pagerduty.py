"""The PagerDuty channel: repeats are skipped, the routing key is added only when sending."""

from __future__ import annotations

import json

from driftline.alerting.channels.pagerduty import PagerDutyChannel
from driftline.alerting.rules import ChannelConfig, Secret
from tests.alerting.channels.fake_transport import RecordingTransport
from tests.alerting.channels.incidents_fixture import alerts


def test_repeat_is_skipped():
    assert PagerDutyChannel().render(alerts()["repeat"], "p:k:repeat1") is None


def test_routing_key_added_at_send_time_only():
    body = PagerDutyChannel().render(alerts()["firing"], "p:k:firing")
    assert body is not None and "routing_key" not in body
    cfg = ChannelConfig(name="p", type="pagerduty", url=Secret("http://x/"),
                        routing_key=Secret("RK123"))
    t = RecordingTransport()
    PagerDutyChannel().send(cfg, body, "p:k:firing", t)
    ((_, data, headers),) = t.posts
    assert json.loads(data) == {"routing_key": "RK123", **body}
    assert headers["Content-Type"] == "application/json"
    assert "routing_key" not in body  # the stored body is not changed
