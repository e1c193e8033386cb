"""The local receivers ``driftline alerts receive`` serves (and tests send to): each accepted
message is reported once; a retraining request without a valid signature is refused."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from driftline.alerting.receivers import start_receivers
from driftline.alerting.signing import SIGNATURE_HEADER, sign
from driftline.collector.embedded.broker import free_port
from driftline.sdk.errors import ConfigError


def _post(url: str, body: dict, headers: dict[str, str] | None = None) -> int:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_each_message_is_reported_once_and_a_bad_signature_is_refused() -> None:
    urls = (f"http://127.0.0.1:{free_port()}/services/T0001/B0001/tok", f"http://127.0.0.1:{free_port()}/v2/enqueue",
            f"http://127.0.0.1:{free_port()}/hooks/retrain")
    told: list[tuple[str, str]] = []
    servers = start_receivers(*urls, routing_key="rk", secret="s3cret", on_message=lambda k, t: told.append((k, t)))
    try:
        assert _post(urls[0], {"text": "drift!"}) == 200
        assert _post(urls[1], {"routing_key": "rk", "event_action": "trigger", "dedup_key": "d1",
                               "payload": {"summary": "acc low", "source": "x", "severity": "critical"}}) == 202
        event = {"type": "io.driftline.retrain.requested", "data": {"model": "m", "segment": "region=eu"}}
        body = json.dumps(event).encode()
        assert _post(urls[2], event, {SIGNATURE_HEADER: sign("wrong", body, time.time())}) == 401
        assert _post(urls[2], event, {SIGNATURE_HEADER: sign("s3cret", body, time.time()),
                                      "Idempotency-Key": "k1"}) == 202
    finally:
        for s in servers:
            s.close()
    assert told == [("slack", "drift!"), ("pagerduty", "trigger d1: acc low"),
                    ("webhook", "REJECTED: bad or missing signature"),
                    ("webhook", "signature valid; io.driftline.retrain.requested: model=m, segment=region=eu")]


@pytest.mark.parametrize("slack, pd, message", [
    ("https://hooks.slack.com/services/T0001/B0001/x", "http://127.0.0.1:9/v2/enqueue", "--slack-url"),
    ("http://127.0.0.1:9/hooks/x", "http://127.0.0.1:9/v2/enqueue", "TOKEN"),
    ("http://127.0.0.1:9/services/T0001/B0001/x", "http://127.0.0.1:9/enqueue", "--pagerduty-url"),
])
def test_an_address_the_receiver_cannot_serve_is_a_config_error(slack: str, pd: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        start_receivers(slack, pd, "http://127.0.0.1:9/hooks/retrain", routing_key="k", secret="s",
                        on_message=lambda *_: None)
