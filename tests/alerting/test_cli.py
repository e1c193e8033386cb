"""``alerts test``, ``alerts list`` and ``alerts run --once`` through the CLI entry point."""

from __future__ import annotations

import argparse

from driftline.alerting.cli import main, register
from tests.alerting.helpers import insert_window, rules_yaml, unique_model


def test_register_adds_alerts_commands():
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["alerts", "test", "--rules", "r.yaml", "--channel", "x"])
    assert args.alerts_command == "test" and args.channel == "x"


def test_alerts_test_sends_to_each_channel(tmp_path, monkeypatch, slack, pd, receiver, capsys):
    path, env = rules_yaml(tmp_path, "m", slack.url, pd.url, receiver.url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for ch in ("oncall-slack", "oncall-pd", "retrain-ci"):
        assert main(["alerts", "test", "--rules", str(path), "--channel", ch,
                     "--data-dir", str(tmp_path / "d")]) == 0
    assert "test notification" in slack.messages[0]["text"]
    assert pd.events[0]["payload"]["severity"] == "info"
    assert receiver.deliveries[0]["event"]["type"] == "io.driftline.test"
    slack.script.append(("status", 404, {}, b"no_service"))
    assert main(["alerts", "test", "--rules", str(path), "--channel", "oncall-slack",
                 "--data-dir", str(tmp_path / "d")]) == 1
    assert "no_service" in capsys.readouterr().err
    assert main(["alerts", "test", "--rules", str(path), "--channel", "nope",
                 "--data-dir", str(tmp_path / "d")]) == 2


def test_run_once_then_list(tmp_path, monkeypatch, alert_ch, alert_ch_url, slack, pd, receiver,
                            capsys):
    import datetime as dt

    from tests.alerting.helpers import WINDOW
    model = unique_model("cli")
    t0 = dt.datetime.now(dt.timezone.utc) - 4 * WINDOW
    for i in range(3):
        insert_window(alert_ch, model, i, {"age": 0.9}, t0=t0, segment="country=FR")
    path, env = rules_yaml(tmp_path, model, slack.url, pd.url, receiver.url)
    path.write_text(path.read_text().replace("statistic: psi", 'statistic: psi\n    segment: "*"'))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = ["--clickhouse-url", alert_ch_url]
    assert main(["alerts", "run", "--rules", str(path), "--data-dir", str(tmp_path / "d"),
                 "--once", *args]) == 0
    assert len(slack.messages) == 1 and "country=FR" in str(slack.messages[0])
    capsys.readouterr()
    assert main(["alerts", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "OPEN INCIDENTS" in out and model in out and "country=FR" in out
