"""Alerting for ``driftline up --demo``: the demo rules (``demo_rules.yaml``) delivered to a local
receiver (``driftline alerts receive``) that prints each Slack message, PagerDuty event and signed
retraining request to the console.

The stack picks the receiver's ports and fresh secrets, writes the rules with its dashboard's
address into its run directory, and gives both children the same environment (the ``*_env``
names of the rules file). The secrets never appear on a command line (``ps`` shows those).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from driftline.collector.embedded.broker import free_port

RULES = Path(__file__).with_name("demo_rules.yaml")
# The variables demo_rules.yaml names (url_env, routing_key_env, secret_env).
SLACK_URL, PAGERDUTY_URL = "DRIFTLINE_DEMO_SLACK_URL", "DRIFTLINE_DEMO_PAGERDUTY_URL"
PAGERDUTY_KEY = "DRIFTLINE_DEMO_PAGERDUTY_KEY"
RETRAIN_URL, RETRAIN_SECRET = "DRIFTLINE_DEMO_RETRAIN_URL", "DRIFTLINE_DEMO_RETRAIN_SECRET"


@dataclass(frozen=True)
class DemoAlerting:
    rules_path: Path
    env: dict[str, str]
    receiver_args: list[str]


def prepare(run_dir: Path, dashboard_url: str) -> DemoAlerting:
    """The rules file to run, the environment of the alerting and receiver children, and the
    receiver's command line."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    doc["dashboard_url"] = dashboard_url
    rules_path = run_dir / "demo-rules.yaml"
    rules_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    env = {
        SLACK_URL: f"http://127.0.0.1:{free_port()}/services/T0001/B0001/demo",
        PAGERDUTY_URL: f"http://127.0.0.1:{free_port()}/v2/enqueue",
        PAGERDUTY_KEY: secrets.token_hex(16),
        RETRAIN_URL: f"http://127.0.0.1:{free_port()}/hooks/retrain",
        RETRAIN_SECRET: secrets.token_hex(16),
    }
    args = ["alerts", "receive", "--slack-url", env[SLACK_URL], "--pagerduty-url", env[PAGERDUTY_URL],
            "--webhook-url", env[RETRAIN_URL], "--routing-key-env", PAGERDUTY_KEY, "--secret-env", RETRAIN_SECRET]
    return DemoAlerting(rules_path, env, args)
