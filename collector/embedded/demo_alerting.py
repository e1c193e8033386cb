"""Alerting for ``driftline up --demo``: the demo rules (``demo_rules.yaml``) delivered to a local
receiver (``driftline alerts receive``) that prints each Slack message, PagerDuty event and signed
retraining request to the console.

The stack opens the receiver's listening sockets itself (any free port) and keeps them for its
whole run; the receiver inherits them (``--listen-fds``), so no other process can take a port
between its choice and the receiver's start, and a restarted receiver serves the same addresses
(what arrives meanwhile waits in the sockets' queues). The stack also picks fresh secrets, writes
the rules with its dashboard's address into its run directory, and gives both children the same
environment (the ``*_env`` names of the rules file). The secrets never appear on a command line
(``ps`` shows those).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    sockets: tuple[socket.socket, ...]  # the receiver's, listening; pass their descriptors to it

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(s.fileno() for s in self.sockets)

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def prepare(run_dir: Path, dashboard_url: str) -> DemoAlerting:
    """The rules file to run, the environment of the alerting and receiver children, and the
    receiver's command line."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    doc["dashboard_url"] = dashboard_url
    rules_path = run_dir / "demo-rules.yaml"
    rules_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    socks: list[socket.socket] = []
    try:
        for _ in range(3):
            socks.append(_listening())
    except BaseException:
        for s in socks:
            s.close()
        raise
    slack, pagerduty, hook = (s.getsockname()[1] for s in socks)
    env = {
        SLACK_URL: f"http://127.0.0.1:{slack}/services/T0001/B0001/demo",
        PAGERDUTY_URL: f"http://127.0.0.1:{pagerduty}/v2/enqueue",
        PAGERDUTY_KEY: secrets.token_hex(16),
        RETRAIN_URL: f"http://127.0.0.1:{hook}/hooks/retrain",
        RETRAIN_SECRET: secrets.token_hex(16),
    }
    args = ["alerts", "receive", "--slack-url", env[SLACK_URL], "--pagerduty-url", env[PAGERDUTY_URL],
            "--webhook-url", env[RETRAIN_URL], "--routing-key-env", PAGERDUTY_KEY, "--secret-env", RETRAIN_SECRET,
            "--listen-fds", ",".join(str(s.fileno()) for s in socks)]
    return DemoAlerting(rules_path, env, args, tuple(socks))
