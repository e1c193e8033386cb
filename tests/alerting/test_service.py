"""End to end: drift rows in ClickHouse → one Slack message, one PagerDuty trigger, one signed
retraining request; recovery → resolve. Time is an injected clock; channels are local servers."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry

from driftline.alerting.delivery import RetryPolicy
from driftline.alerting.rules import load_rules
from driftline.alerting.service import AlertService
from driftline.alerting.store import list_alerts
from tests.alerting.helpers import (
    T0, insert_impacts, insert_window, rules_yaml, unique_model, window_end,
)

HEALTHY = {"age": 0.03, "income": 0.05, "country": 0.02}
DRIFTED = {"age": 0.45, "income": 0.31, "country": 0.08}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock, registry=None):
    receiver.clock = clock  # the receiver checks the signature's age against the same clock
    path, env = rules_yaml(tmp_path, model, slack.url, pd.url, receiver.url)
    rules = load_rules(path, env=env)
    return AlertService(rules, alert_ch, tmp_path / "state", registry=registry or CollectorRegistry(),
                        clock=clock, retry=RetryPolicy(base_s=0.01, cap_s=0.05))


def test_drift_to_one_alert_per_channel_then_resolve(tmp_path, alert_ch, slack, pd, receiver,
                                                     caplog):
    caplog.set_level(logging.DEBUG, logger="driftline.alerting")
    model = unique_model("fraud")
    clock = Clock(window_end(0))
    registry = CollectorRegistry()
    svc = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock, registry)
    for i in range(4):
        insert_window(alert_ch, model, i, HEALTHY)
    clock.t = window_end(3)
    assert svc.tick() == []
    # Three drifted windows: nothing for the first two (hysteresis), one incident on the third.
    for i, expect in ((4, 0), (5, 0), (6, 1)):
        insert_window(alert_ch, model, i, DRIFTED)
        clock.t = window_end(i)
        events = svc.tick()
        assert len(events) == expect, i
    # Still drifting: no new notification per window.
    insert_window(alert_ch, model, 7, DRIFTED)
    clock.t = window_end(7)
    assert svc.tick() == []

    assert len(slack.messages) == 1
    msg = slack.messages[0]
    text = json.dumps(msg)
    assert "feature-drift" in msg["text"] and "psi > 0.2" in msg["text"]
    assert model in text and "v1" in text and "all traffic" in text
    assert "2026-03-01 00:40 UTC" in text  # window 4, the first breaching one
    features_block = next(b for b in msg["blocks"] if "Top drifted features" in
                          b.get("text", {}).get("text", ""))["text"]["text"]
    assert features_block.index("`age`") < features_block.index("`income`")
    assert "0.45" in features_block and "country" not in features_block
    button = next(b for b in msg["blocks"] if b["type"] == "actions")["elements"][0]["url"]
    q = parse_qs(urlsplit(button).query)
    assert button.startswith("http://dash.example:8501/?")
    assert q["page"] == ["model"] and q["model"] == [model] and q["version"] == ["v1"]
    assert q["from"][0] < "2026-03-01T00:40:00Z" < q["to"][0]

    assert len(pd.events) == 1 and pd.incidents_opened == 1
    trigger = pd.events[0]
    key = trigger["dedup_key"]
    assert trigger["event_action"] == "trigger" and key.startswith("driftline-")
    assert trigger["payload"]["severity"] == "critical"
    assert pd.incidents[key] == "triggered"

    assert len(receiver.deliveries) == 1 and receiver.rejected == 0
    d = receiver.deliveries[0]
    event = d["event"]
    assert event["specversion"] == "1.0" and event["type"] == "io.driftline.retrain.requested"
    assert d["headers"]["idempotency-key"] == event["id"]
    assert d["headers"]["content-type"] == "application/cloudevents+json"
    ev = event["data"]["evidence"]
    assert event["data"]["model"] == model and event["data"]["model_version"] == "v1"
    assert [f["feature"] for f in ev["drifted_features"]] == ["age", "income"]
    assert ev["since"].startswith("2026-03-01T00:40")
    # The SQL in the bundle reproduces the evidence.
    rows = alert_ch.query(ev["sql"]).result_rows
    assert len(rows) == 7 and all(r[0] == model for r in rows)
    drifted_windows = [r for r in rows if any(m[0] == "age" and m[2] > 0.2 for m in r[5])]
    assert len(drifted_windows) == 3

    # Recovery: one healthy window is not enough (resolve_after: 2), the second resolves.
    insert_window(alert_ch, model, 8, HEALTHY)
    clock.t = window_end(8)
    assert svc.tick() == []
    insert_window(alert_ch, model, 9, HEALTHY)
    clock.t = window_end(9)
    events = svc.tick()
    assert [e.event for e in events] == ["resolved"]
    assert len(slack.messages) == 2 and "Resolved" in json.dumps(slack.messages[1])
    assert [e["event_action"] for e in pd.events] == ["trigger", "resolve"]
    assert pd.events[1]["dedup_key"] == key and pd.incidents[key] == "resolved"
    assert len(receiver.deliveries) == 1  # retraining is requested on firing only

    # History in driftline.alerts, and the open/recent listing.
    hist = alert_ch.query(
        "SELECT event, incident FROM driftline.alerts FINAL WHERE model = %(m)s ORDER BY event",
        parameters={"m": model}).result_rows
    assert hist == [("firing", key), ("resolved", key)]
    import datetime as dt
    opened, recent = list_alerts(alert_ch, dt.datetime.fromtimestamp(clock.t, dt.timezone.utc),
                                 recent_s=10 * 86400, limit=1000)
    assert not any(o["incident"] == key for o in opened)
    assert sum(r["incident"] == key for r in recent) == 2

    def sample(channel: str, outcome: str) -> float:
        return registry.get_sample_value("driftline_alert_notifications_total",
                                         {"channel": channel, "outcome": outcome}) or 0.0
    assert sample("oncall-slack", "sent") == 2 and sample("oncall-pd", "sent") == 2
    assert sample("retrain-ci", "sent") == 1 and sample("_history", "sent") == 2
    # Secrets never reach the logs.
    logs = caplog.text
    assert "XXXXsecretTOKEN" not in logs and "R0UT1NGKEY" not in logs and "whsec" not in logs
    assert svc.outbox.pending() == 0
    svc.close()


def test_alerts_list_drifted_features_by_impact(tmp_path, alert_ch, slack, pd, receiver):
    """age drifted most (psi 0.45 vs 0.31) but income matters more to the model: every channel
    lists income first, with its impact; country has the highest impact but does not breach."""
    model = unique_model("impact")
    clock = Clock(window_end(0))
    svc = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock)
    fired = []
    for i in range(3):
        insert_window(alert_ch, model, i, DRIFTED)
        insert_impacts(alert_ch, model, i, {"income": 0.2, "age": 0.05, "country": 0.3})
        clock.t = window_end(i)
        fired += [e.event for e in svc.tick()]
    assert fired == ["firing"]

    (msg,) = slack.messages
    block = next(b for b in msg["blocks"] if "Top drifted features" in
                 b.get("text", {}).get("text", ""))["text"]["text"]
    lines = block.splitlines()
    assert lines[0] == "*Top drifted features* (by impact)" and len(lines) == 3
    assert lines[1].startswith("• `income` impact *0.2* · psi 0.31")
    assert lines[2].startswith("• `age` impact *0.05* · psi 0.45")
    (trigger,) = pd.events
    top = trigger["payload"]["custom_details"]["top_features"]
    assert [(f["feature"], f["impact"], f["value"]) for f in top] == [("income", 0.2, 0.31), ("age", 0.05, 0.45)]
    (delivery,) = receiver.deliveries
    feats = delivery["event"]["data"]["evidence"]["drifted_features"]
    assert [(f["feature"], f["impact"]) for f in feats] == [("income", 0.2), ("age", 0.05)]
    svc.close()


def test_retrain_cooldown_per_model_and_repeat(tmp_path, alert_ch, slack, pd, receiver):
    model = unique_model("cool")
    clock = Clock(window_end(0))
    svc = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock)
    seq = [DRIFTED] * 3 + [HEALTHY] * 2 + [DRIFTED] * 3
    fired = 0
    for i, psi in enumerate(seq):
        insert_window(alert_ch, model, i, psi)
        clock.t = window_end(i)
        fired += sum(e.event == "firing" for e in svc.tick())
    assert fired == 2 and pd.incidents_opened == 2
    assert len(set(pd.incidents)) == 2  # a new incident gets a new dedup key
    assert len(receiver.deliveries) == 1  # second firing inside the 24 h cooldown
    # Repeat reminder after repeat_interval_s (default 4 h) while still open; PD is not re-paged.
    clock.t += 4 * 3600 + 1
    events = svc.tick()
    assert [e.event for e in events] == ["repeat"]
    assert len(slack.messages) == 4 and "Still firing" in json.dumps(slack.messages[-1])
    assert len(pd.events) == 3
    svc.close()


def test_windows_below_min_samples_are_ignored(tmp_path, alert_ch, slack, pd, receiver):
    model = unique_model("small")
    clock = Clock(window_end(0))
    svc = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock)
    for i in range(5):
        insert_window(alert_ch, model, i, DRIFTED, size=100)  # min_samples is 500
        clock.t = window_end(i)
        assert svc.tick() == []
    assert slack.messages == [] and pd.events == []
    svc.close()


def test_restart_keeps_incident_state(tmp_path, alert_ch, slack, pd, receiver):
    model = unique_model("restart")
    clock = Clock(window_end(0))
    svc = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock)
    for i in range(3):
        insert_window(alert_ch, model, i, DRIFTED)
    clock.t = window_end(2)
    assert [e.event for e in svc.tick()] == ["firing"]
    svc.close()
    svc2 = make_service(tmp_path, alert_ch, slack, pd, receiver, model, clock)
    insert_window(alert_ch, model, 3, DRIFTED)
    clock.t = window_end(3)
    assert svc2.tick() == []
    assert len(slack.messages) == 1 and len(pd.events) == 1 and len(receiver.deliveries) == 1
    svc2.close()
    _ = T0
