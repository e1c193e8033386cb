"""A restart in the middle of delivery: the service process is SIGKILLed while a request is in
flight (before the channel processed it, then after it processed it but before the answer came
back). After each restart the outbox resends; the fake servers see each message exactly once
(PagerDuty by dedup_key, the retraining endpoint by Idempotency-Key)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

from tests.alerting.helpers import WINDOW, insert_window, rules_yaml, unique_model

DRIFTED = {"age": 0.5, "income": 0.3}


def start(rules, env, url, data_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "driftline.alerting.cli", "alerts", "run", "--rules", str(rules),
         "--clickhouse-url", url, "--data-dir", str(data_dir)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when_held(proc, server):
    assert server.held.wait(60), "the service never reached the channel"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    server.release.set()
    server.held.clear()


def test_sigkill_mid_delivery_loses_nothing_and_sends_nothing_twice(
        tmp_path, alert_ch, alert_ch_url, slack, pd, receiver):
    model = unique_model("crash")
    now = dt.datetime.now(dt.timezone.utc)
    t0 = now - 3 * WINDOW - dt.timedelta(minutes=1)
    for i in range(3):
        insert_window(alert_ch, model, i, DRIFTED, t0=t0)
    rules, env = rules_yaml(tmp_path, model, slack.url, pd.url, receiver.url, interval_s=0.2)
    data = tmp_path / "state"

    # 1. Killed while Slack holds the first request unprocessed: everything is queued, nothing sent.
    slack.script.append(("hold",))
    kill_when_held(start(rules, env, alert_ch_url, data), slack)
    assert slack.messages == [] and pd.events == [] and receiver.deliveries == []
    slack.release.clear()

    # 2. Killed after PagerDuty processed the trigger but before its answer arrived.
    pd.script.append(("ack_lost",))
    kill_when_held(start(rules, env, alert_ch_url, data), pd)
    assert len(slack.messages) == 1 and pd.incidents_opened == 1
    pd.release.clear()

    # 3. Killed after the retraining endpoint accepted the request, before the answer.
    receiver.script.append(("ack_lost",))
    kill_when_held(start(rules, env, alert_ch_url, data), receiver)
    receiver.release.clear()

    # 4. A clean run drains the outbox and stops on SIGTERM.
    proc = start(rules, env, alert_ch_url, data)
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    while dt.datetime.now() < deadline and len(receiver.requests) < 2:
        proc.poll()
        assert proc.returncode is None, proc.stderr.read().decode()
        time.sleep(0.05)
    history = []
    while dt.datetime.now() < deadline:
        history = alert_ch.query("SELECT event FROM driftline.alerts FINAL WHERE model = %(m)s",
                                 parameters={"m": model}).result_rows
        if history:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0

    assert len(slack.messages) == 1 and len(slack.requests) == 2  # the first was lost in 1.
    assert pd.incidents_opened == 1 and len(pd.incidents) == 1
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger"]  # dedup'd by key
    assert len({e["dedup_key"] for e in pd.events}) == 1
    assert len(receiver.requests) == 2 and len(receiver.deliveries) == 1
    keys = [r["headers"]["idempotency-key"] for r in receiver.requests]
    assert keys[0] == keys[1]
    assert history == [("firing",)]
