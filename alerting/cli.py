"""``driftline alerts run | test | list``.

``register(subparsers)`` adds the ``alerts`` command to the main ``driftline`` parser; ``main``
runs it standalone (``python -m driftline.alerting.cli alerts ...``). Settings come from flags,
then ``DRIFTLINE_*`` environment variables, read here at the process entry point only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url
from driftline.sdk.errors import ConfigError


def _default_data_dir() -> str:
    return os.environ.get("DRIFTLINE_ALERTING_DIR",
                          str(Path.home() / ".driftline" / "alerting"))


def register(subparsers: Any) -> None:
    """Add ``alerts run``, ``alerts test`` and ``alerts list`` to a subparsers object."""
    alerts = subparsers.add_parser("alerts", help="alert rules, notifications, retraining triggers")
    sub = alerts.add_subparsers(dest="alerts_command", metavar="{run,test,list,receive}")
    sub.required = True

    def common(p: argparse.ArgumentParser, rules: bool, data_dir: bool) -> None:
        p.add_argument("--clickhouse-url", default=None,
                       help=f"ClickHouse HTTP URL (env DRIFTLINE_CLICKHOUSE_URL, "
                            f"default {DEFAULT_URL})")
        if rules:
            p.add_argument("--rules", required=True, help="rules YAML file")
        if data_dir:
            p.add_argument("--data-dir", default=None,
                           help="where the outbox lives (env DRIFTLINE_ALERTING_DIR, "
                                "default ~/.driftline/alerting)")

    run = sub.add_parser("run", help="evaluate rules and deliver alerts until stopped")
    common(run, rules=True, data_dir=True)
    run.add_argument("--metrics-port", type=int, default=0,
                     help="serve Prometheus metrics on 127.0.0.1:PORT (0: off)")
    run.add_argument("--once", action="store_true", help="one evaluation and delivery, then exit")
    run.set_defaults(func=cmd_run)

    test = sub.add_parser("test", help="send a test notification to one channel")
    common(test, rules=True, data_dir=True)
    test.add_argument("--channel", required=True, help="channel name from the rules file")
    test.set_defaults(func=cmd_test)

    lst = sub.add_parser("list", help="show open incidents and recent alert events")
    common(lst, rules=False, data_dir=False)
    lst.add_argument("--recent-hours", type=float, default=24.0)
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=cmd_list)

    rcv = sub.add_parser("receive", help="local Slack, PagerDuty and retraining-webhook receivers that print "
                         "each message (what `driftline up --demo` delivers to)")
    rcv.add_argument("--slack-url", required=True, help="http://127.0.0.1:PORT/services/T0001/B0001/TOKEN")
    rcv.add_argument("--pagerduty-url", required=True, help="http://127.0.0.1:PORT/v2/enqueue")
    rcv.add_argument("--webhook-url", required=True, help="http://127.0.0.1:PORT/hooks/retrain")
    rcv.add_argument("--routing-key-env", required=True, help="environment variable holding the PagerDuty routing key")
    rcv.add_argument("--secret-env", required=True, help="environment variable holding the webhook HMAC secret")
    rcv.add_argument("--listen-fds", metavar="SLACK,PAGERDUTY,WEBHOOK",
                     help="serve on these inherited listening sockets (file descriptors, in the URLs' order) "
                          "instead of binding: how `driftline up --demo` starts it, holding the ports from the "
                          "moment it chose them")
    rcv.set_defaults(func=cmd_receive)


def _client(url: str | None) -> Any:
    return connect(resolve_url(url, os.environ))


def cmd_run(args: argparse.Namespace) -> int:
    """``driftline alerts run``."""
    from prometheus_client import CollectorRegistry, start_http_server

    from driftline.alerting.rules import load_rules
    from driftline.alerting.service import AlertService

    rules = load_rules(args.rules)
    registry = CollectorRegistry()
    svc = AlertService(rules, _client(args.clickhouse_url), args.data_dir or _default_data_dir(),
                       registry=registry)
    if args.metrics_port:
        # DRIFTLINE_METRICS_HOST=0.0.0.0 in containers, so Prometheus can scrape from outside.
        start_http_server(args.metrics_port, addr=os.environ.get("DRIFTLINE_METRICS_HOST", "127.0.0.1"),
                          registry=registry)
    if args.once:
        svc.tick()
        svc.close()
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: svc.stop())
    logging.getLogger("driftline.alerting").info(
        "alerting: %d rules, %d channels, every %gs", len(rules.rules), len(rules.channels),
        rules.interval_s)
    try:
        svc.run()
    finally:
        svc.close()
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """``driftline alerts test --channel NAME``."""
    from driftline.alerting.rules import load_rules
    from driftline.alerting.service import AlertService

    rules = load_rules(args.rules)
    if args.channel not in rules.channels:
        raise ConfigError(f"--channel: unknown channel {args.channel!r}; "
                          f"known: {', '.join(rules.channels) or 'none'}")
    svc = AlertService(rules, None, args.data_dir or _default_data_dir())
    try:
        status, error = svc.send_test(args.channel)
    finally:
        svc.close()
    if status == "sent":
        print(f"test notification sent to {args.channel}")
        return 0
    print(f"test notification to {args.channel}: {status} {error}".rstrip(), file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    """``driftline alerts list``."""
    from driftline.alerting.store import list_alerts

    now = dt.datetime.now(dt.timezone.utc)
    opened, recent = list_alerts(_client(args.clickhouse_url), now, args.recent_hours * 3600)
    if args.json:
        print(json.dumps({"open": opened, "recent": recent}, default=str, indent=2))
        return 0
    print(f"OPEN INCIDENTS ({len(opened)})")
    for o in opened:
        seg = f" [{o['segment']}]" if o["segment"] else ""
        print(f"  {o['severity']:<8} {o['rule']:<24} {o['model']} {o['model_version']}{seg}  "
              f"{o['condition']}  since {o['since']:%Y-%m-%d %H:%M}  {o['incident']}")
    print(f"\nRECENT EVENTS, last {args.recent_hours:g} h ({len(recent)})")
    for r in recent:
        seg = f" [{r['segment']}]" if r["segment"] else ""
        print(f"  {r['event_time']:%Y-%m-%d %H:%M:%S}  {r['event']:<8} {r['rule']:<24} "
              f"{r['model']} {r['model_version']}{seg}  {r['condition']}")
    return 0


def _inherited_sockets(fds: str | None) -> list[socket.socket] | None:
    """The listening sockets ``--listen-fds`` names: three open file descriptors."""
    if fds is None:
        return None
    try:
        numbers = [int(f) for f in fds.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or min(numbers) < 0:
        raise ConfigError(f"--listen-fds: three file descriptors, SLACK,PAGERDUTY,WEBHOOK (got {fds!r})")
    socks = []
    for n in numbers:
        try:
            socks.append(socket.socket(fileno=n))
        except OSError as exc:
            raise ConfigError(f"--listen-fds: file descriptor {n} is not an open socket ({exc.strerror})") from None
    return socks


def cmd_receive(args: argparse.Namespace) -> int:
    """``driftline alerts receive``: serve until SIGTERM / SIGINT, print each message."""
    import threading

    from driftline.alerting.receivers import start_receivers

    secrets = {}
    for flag, var in (("--routing-key-env", args.routing_key_env), ("--secret-env", args.secret_env)):
        if not os.environ.get(var):
            raise ConfigError(f"{flag}: environment variable {var} is not set")
        secrets[flag] = os.environ[var]

    def show(kind: str, text: str) -> None:
        print(f"receiver: {kind:<9} {text}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before serving: a stop from then on is a clean one
        signal.signal(sig, lambda *_: stop.set())
    servers = start_receivers(args.slack_url, args.pagerduty_url, args.webhook_url,
                              routing_key=secrets["--routing-key-env"], secret=secrets["--secret-env"],
                              on_message=show, sockets=_inherited_sockets(args.listen_fds))
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for s in servers:
            s.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``alerts`` commands standalone."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="driftline")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"driftline: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
