"""The local receivers ``driftline alerts receive`` serves (and tests send to): each accepted
message is reported once; a retraining request without a valid signature is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from driftline.alerting.receivers import start_receivers
from driftline.alerting.signing import SIGNATURE_HEADER, sign
from driftline.collector.embedded.broker import free_port
from driftline.sdk.errors import ConfigError


def _post(url: str, body: dict, headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> int:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
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


def _receive(demo: Any, env: dict[str, str]) -> subprocess.Popen[str]:
    """``driftline alerts receive`` as ``up --demo`` starts it: on the stack's listening sockets."""
    return subprocess.Popen([sys.executable, "-m", "driftline.cli", *demo.receiver_args], env=env,
                            pass_fds=demo.fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_demo_receiver_serves_the_sockets_the_stack_holds_through_a_restart(tmp_path: Path) -> None:
    """The demo's receiver ports are held from the moment they are chosen: a message sent before
    the receiver runs, or while it restarts, waits in the socket's queue and is delivered; no other
    process can bind the port meanwhile."""
    from driftline.collector.embedded.demo_alerting import SLACK_URL, prepare

    demo = prepare(tmp_path, "")
    env = {**os.environ, **demo.env}
    url = demo.env[SLACK_URL]
    port = int(url.split(":")[2].split("/")[0])
    try:
        with pytest.raises(OSError):  # taken from the start, by the stack itself
            socket.create_server(("127.0.0.1", port))
        sent: list[int] = []
        early = threading.Thread(target=lambda: sent.append(_post(url, {"text": "before the start"}, timeout_s=60)))
        early.start()
        first = _receive(demo, env)
        early.join(90)
        assert sent == [200]
        first.kill()
        first.wait(10)
        late = threading.Thread(target=lambda: sent.append(_post(url, {"text": "during the restart"}, timeout_s=60)))
        late.start()
        time.sleep(0.5)  # the request waits in the queue of a socket no process serves
        second = _receive(demo, env)
        late.join(90)
        assert sent == [200, 200]
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
        assert "receiver: slack     during the restart" in out
        assert "receiver: slack     before the start" in first.communicate(timeout=10)[0]
    finally:
        demo.close()


@pytest.mark.parametrize("fds, message", [("3,4", "three file descriptors"), ("x,y,z", "three file descriptors"),
                                          ("900,901,902", "not an open socket")])
def test_listen_fds_that_are_not_three_sockets_are_a_config_error(fds: str, message: str) -> None:
    env = {**os.environ, "RK": "k", "SEC": "s"}
    done = subprocess.run([sys.executable, "-m", "driftline.cli", "alerts", "receive",
                           "--slack-url", "http://127.0.0.1:9/services/T0001/B0001/x",
                           "--pagerduty-url", "http://127.0.0.1:9/v2/enqueue", "--webhook-url", "http://127.0.0.1:9/h",
                           "--routing-key-env", "RK", "--secret-env", "SEC", "--listen-fds", fds],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_sockets_on_other_ports_than_the_urls_are_a_config_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as a, socket.create_server(("127.0.0.1", 0)) as b, \
            socket.create_server(("127.0.0.1", 0)) as c:
        ports = [s.getsockname()[1] for s in (a, b, c)]
        urls = (f"http://127.0.0.1:{ports[0]}/services/T0001/B0001/t", f"http://127.0.0.1:{ports[2]}/v2/enqueue",
                f"http://127.0.0.1:{ports[1]}/hooks/retrain")
        with pytest.raises(ConfigError, match="inherited sockets listen on ports"):
            start_receivers(*urls, routing_key="k", secret="s", on_message=lambda *_: None, sockets=(a, b, c))
