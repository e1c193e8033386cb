"""Rules validation: good files load, bad ones fail at start with a message saying what to fix."""

from __future__ import annotations

import pytest
import yaml

from driftline.alerting.rules import Secret, load_rules, parse_rules
from driftline.sdk.errors import ConfigError

GOOD = """
version: 1
channels:
  s: {type: slack, url_env: SLACK}
  p: {type: pagerduty, routing_key_file: pd.key}
  h: {type: webhook, url: "https://ci.example.com/hook", secret_env: HOOK}
  m: {type: email, smtp_host: smtp.example.com, sender: a@example.com, to: [b@example.com]}
rules:
  - {name: psi, kind: drift, statistic: psi, threshold: 0.2, fire_after: 3, channels: [s, p],
     retrain: h}
  - {name: acc, kind: performance, statistic: accuracy, threshold: 0.8, window_s: 3600,
     min_samples: 500, channels: [s]}
  - {name: silence, kind: volume, threshold: 1, window_s: 600, severity: critical, channels: [p]}
  - {name: shadow, kind: shadow_agreement, threshold: 0.95, window_s: 3600, channels: [m]}
  - {name: p99, kind: latency, statistic: p99, threshold: 250, window_s: 300, segment: "region=*"}
  - {name: errs, kind: error_rate, op: ">=", threshold: 0.05, window_s: 300}
"""
ENV = {"SLACK": "https://hooks.slack.com/services/T/B/tok", "HOOK": "hsecret"}


def test_good_file(tmp_path):
    (tmp_path / "pd.key").write_text("routingkey\n")
    (tmp_path / "r.yaml").write_text(GOOD)
    rs = load_rules(tmp_path / "r.yaml", env=ENV)
    assert [r.name for r in rs.rules] == ["psi", "acc", "silence", "shadow", "p99", "errs"]
    assert rs.channels["p"].routing_key == Secret("routingkey")
    assert rs.channels["s"].rate_per_s == 1.0 and rs.channels["p"].rate_per_s == 2.0
    acc = rs.rules[1]
    assert acc.op == "<" and acc.breaches(0.7) and not acc.breaches(0.9)
    assert rs.rules[2].per_version is False and rs.rules[0].threshold == 0.2
    assert "tok" not in repr(rs.channels["s"]) and "hsecret" not in repr(rs)


def bad(mutate, env=ENV):
    doc = yaml.safe_load(GOOD)
    doc["channels"]["p"] = {"type": "pagerduty", "routing_key": "k"}
    mutate(doc)
    with pytest.raises(ConfigError) as e:
        parse_rules(doc, env=env)
    return str(e.value)


def test_bad_files_fail_with_a_clear_message():
    assert "unknown key(s) treshold" in bad(lambda d: d["rules"][0].update(treshold=1))
    assert "kind" in bad(lambda d: d["rules"][0].update(kind="magic"))
    assert "unknown channel 'nope'" in bad(lambda d: d["rules"][0].update(channels=["nope"]))
    assert "retrain" in bad(lambda d: d["rules"][0].update(retrain="s"))
    assert "window_s" in bad(lambda d: d["rules"][1].pop("window_s"))
    assert "threshold" in bad(lambda d: d["rules"][1].pop("threshold"))
    assert "duplicate" in bad(lambda d: d["rules"].append(dict(d["rules"][0])))
    assert "SLACK is not set" in bad(lambda d: None, env={"HOOK": "x"})
    assert "fire_after" in bad(lambda d: d["rules"][0].update(fire_after=0))
    assert "severity" in bad(lambda d: d["rules"][0].update(severity="meh"))
    assert "only one of" in bad(lambda d: d["channels"]["s"].update(url="https://x"))
    assert "statistic" in bad(lambda d: d["rules"][4].update(statistic="p42"))
    assert "segment" in bad(lambda d: d["rules"][1].update(segment="*"))
    assert "non-empty" in bad(lambda d: d.update(rules=[]))
    assert "flag: one of verdict, exceeded" in bad(lambda d: d["rules"][0].update(threshold=None, flag="own"))
    assert "without a threshold" in bad(lambda d: d["rules"][0].update(flag="exceeded"))
    assert "without a threshold" in bad(lambda d: d["rules"][1].update(flag="verdict"))


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml", env={})
    (tmp_path / "x.yaml").write_text("rules: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_rules(tmp_path / "x.yaml", env={})


def test_estimation_rule_kinds():
    from driftline.alerting.rules import parse_rules

    def one(**kw):
        return parse_rules({"rules": [{"name": "r", **kw}]}, env={}).rules[0]

    r = one(kind="estimated_performance", statistic="f1")
    assert (r.op, r.threshold, r.window_s) == ("<", None, 0)  # the detector's verdict, its windows
    assert one(kind="estimated_performance", statistic="mae", threshold=3).op == ">"
    with pytest.raises(ConfigError, match="threshold: required for realised_performance"):
        one(kind="realised_performance", statistic="accuracy")
    with pytest.raises(ConfigError, match="statistic: for estimated_performance one of accuracy"):
        one(kind="estimated_performance", statistic="psi")
