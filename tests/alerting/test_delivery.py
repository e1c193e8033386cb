"""Delivery against the fake Slack and PagerDuty servers: status codes, 429 Retry-After,
5xx, timeouts, permanent 4xx, rate limits, redirects. Time is an injected clock."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from driftline.alerting.delivery import Deliverer, RetryPolicy, parse_retry_after
from driftline.alerting.metrics import AlertMetrics
from driftline.alerting.outbox import Outbox
from driftline.alerting.rules import ChannelConfig, Secret
from driftline.alerting.receivers import LocalRedirect, LocalSlack

KEY = "R0UT1NGKEY0123456789abcdef012345"


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def setup(tmp_path, channels, **kw):
    clock = Clock()
    registry = CollectorRegistry()
    outbox = Outbox(tmp_path / "o.sqlite3")
    d = Deliverer(outbox, channels, AlertMetrics(registry), clock=clock, rng=random.Random(1),
                  policy=kw.pop("policy", RetryPolicy(base_s=1.0, cap_s=8.0, max_attempts=4)),
                  allow_local=kw.pop("allow_local", True), **kw)
    return d, outbox, clock, registry


def slack_channel(url: str, **kw) -> ChannelConfig:
    return ChannelConfig(name="s", type="slack", url=Secret(url), **kw)


def count(registry, channel, outcome):
    return registry.get_sample_value("driftline_alert_notifications_total",
                                     {"channel": channel, "outcome": outcome}) or 0.0


def test_slack_429_retry_after_is_honoured(tmp_path, slack):
    slack.script.append(("status", 429, {"Retry-After": "30"}, b"rate_limited"))
    d, outbox, clock, reg = setup(tmp_path, {"s": slack_channel(slack.url)})
    outbox.enqueue("k1", "s", "slack", {"text": "hello"}, clock())
    assert d.deliver_due() == 0 and slack.messages == []
    clock.t += 29
    assert d.deliver_due() == 0 and len(slack.requests) == 1  # still waiting
    clock.t += 1.5
    assert d.deliver_due() == 1 and len(slack.messages) == 1
    assert count(reg, "s", "rate_limited") == 1 and count(reg, "s", "sent") == 1


def test_5xx_and_timeouts_retry_with_backoff_then_succeed(tmp_path, pd):
    pd.script.extend([("status", 500, {}, b""), ("status", 503, {}, b""), ("delay", 0.5)])
    ch = ChannelConfig(name="p", type="pagerduty", url=Secret(pd.url), routing_key=Secret(KEY),
                 timeout_s=0.2, rate_per_s=0)
    d, outbox, clock, reg = setup(tmp_path, {"p": ch})
    ev = {"event_action": "trigger", "dedup_key": "dk1",
          "payload": {"summary": "s", "source": "x", "severity": "error"}}
    outbox.enqueue("k1", "p", "pagerduty", ev, clock())
    waits = []
    for _ in range(3):
        assert d.deliver_due() == 0
        waits.append(outbox.next_due_at() - clock())
        clock.t = outbox.next_due_at()
    assert d.deliver_due() == 1
    # Jittered exponential backoff: within [step/2, step] for steps 1, 2, 4 s.
    for w, step in zip(waits, (1, 2, 4)):
        assert step / 2 <= w <= step
    # The timed-out attempt reached PagerDuty, the retry was de-duplicated by dedup_key.
    assert pd.incidents_opened == 1 and pd.incidents == {"dk1": "triggered"}
    assert count(reg, "p", "retry") == 3 and count(reg, "p", "sent") == 1


def test_permanent_errors_are_not_retried(tmp_path, slack, pd):
    chans = {
        "bad-path": slack_channel(slack.url + "x"),  # Slack: 404 no_service
        "s": slack_channel(slack.url),
        "p": ChannelConfig(name="p", type="pagerduty", url=Secret(pd.url),
                           routing_key=Secret("wrong")),
    }
    d, outbox, clock, reg = setup(tmp_path, chans)
    outbox.enqueue("a", "bad-path", "slack", {"text": "x"}, clock())
    outbox.enqueue("b", "s", "slack", {"nope": 1}, clock())  # 400 invalid_payload
    outbox.enqueue("c", "p", "pagerduty", {"event_action": "trigger"}, clock())  # 400
    assert d.deliver_due() == 0
    failed = {k: err for k, _c, status, _a, err in outbox.messages("failed")}
    assert failed["a"].startswith("HTTP 404 no_service")
    assert failed["b"].startswith("HTTP 400 invalid_payload")
    assert "Invalid routing key" in failed["c"]
    assert outbox.pending() == 0 and count(reg, "s", "failed") == 1


def test_retries_exhausted_mark_failed(tmp_path, slack):
    slack.script.extend([("status", 502, {}, b"")] * 10)
    d, outbox, clock, reg = setup(tmp_path, {"s": slack_channel(slack.url, rate_per_s=0)})
    outbox.enqueue("k", "s", "slack", {"text": "x"}, clock())
    for _ in range(10):
        d.deliver_due()
        nxt = outbox.next_due_at()
        if nxt is None:
            break
        clock.t = nxt
    assert [m[2] for m in outbox.messages()] == ["failed"]
    assert len(slack.requests) == 4 and count(reg, "s", "failed") == 1


def test_slack_rate_limit_one_message_per_second(tmp_path, slack):
    d, outbox, clock, _ = setup(tmp_path, {"s": slack_channel(slack.url, rate_per_s=1.0)})
    for i in range(3):
        outbox.enqueue(f"k{i}", "s", "slack", {"text": f"m{i}"}, clock())
    assert d.deliver_due() == 1
    clock.t += 0.5
    assert d.deliver_due() == 0
    clock.t += 0.5
    assert d.deliver_due() == 1
    clock.t += 1
    assert d.deliver_due() == 1
    assert [m["text"] for m in slack.messages] == ["m0", "m1", "m2"]  # order kept


def test_fifo_per_channel_resolve_never_overtakes_trigger(tmp_path, pd):
    pd.script.append(("status", 500, {}, b""))
    ch = ChannelConfig(name="p", type="pagerduty", url=Secret(pd.url), routing_key=Secret(KEY),
                 rate_per_s=0)
    d, outbox, clock, _ = setup(tmp_path, {"p": ch})
    trig = {"event_action": "trigger", "dedup_key": "dk",
            "payload": {"summary": "s", "source": "x", "severity": "error"}}
    outbox.enqueue("t", "p", "pagerduty", trig, clock())
    outbox.enqueue("r", "p", "pagerduty", {"event_action": "resolve", "dedup_key": "dk"}, clock())
    d.deliver_due()
    assert pd.events == []
    clock.t = outbox.next_due_at()
    d.deliver_due()
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve"]
    assert pd.incidents == {"dk": "resolved"}


def test_redirect_to_internal_address_is_not_followed(tmp_path):
    internal = LocalSlack()
    redirect = LocalRedirect(internal.url)
    try:
        d, outbox, clock, reg = setup(tmp_path, {"s": slack_channel(redirect.url)})
        outbox.enqueue("k", "s", "slack", {"text": "x"}, clock())
        d.deliver_due()
        assert internal.requests == [] and len(redirect.requests) == 1
        (_, _, status, _, err), = outbox.messages()
        assert status == "failed" and "redirect" in err
        assert count(reg, "s", "refused") == 1
    finally:
        internal.close()
        redirect.close()


def test_ssrf_refused_at_send_time_without_local_allowance(tmp_path, slack):
    d, outbox, clock, reg = setup(tmp_path, {"s": slack_channel(slack.url)}, allow_local=False)
    outbox.enqueue("k", "s", "slack", {"text": "x"}, clock())
    d.deliver_due()
    assert slack.requests == [] and count(reg, "s", "refused") == 1
    (_, _, status, _, err), = outbox.messages()
    assert "only https" in err and "secretTOKEN" not in err  # the URL path is never shown


@pytest.mark.parametrize("value,expected", [("30", 30.0), ("0", 0.0), (None, None),
                                            ("junk", None),
                                            ("Thu, 01 Jan 1970 00:00:40 GMT", 30.0)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=10.0) == expected
