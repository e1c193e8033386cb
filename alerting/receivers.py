"""Local HTTP servers that behave as Slack incoming webhooks, PagerDuty Events API v2 and a
retraining endpoint, as their documentation describes. Each binds 127.0.0.1 (port 0: any free one).

They are what ``driftline up --demo`` delivers its alerts to (``driftline alerts receive``, which
prints every message), and what tests of alerting — driftline's and users' — send to, as
``InMemorySpanExporter`` is for OpenTelemetry: ``on_message(kind, text)`` is called with a
one-line summary of each accepted message.

Behaviour by default:
* Slack: 200 ``ok`` for a JSON body with ``text`` or ``blocks``; 400 ``invalid_payload``
  otherwise; 404 ``no_service`` for an unknown webhook path.
* PagerDuty: 202 ``{"status":"success","message":"Event processed","dedup_key":...}``; 400
  ``invalid event`` for a bad routing key or event; triggers with the key of an open incident
  are de-duplicated as PagerDuty does; ``resolve`` closes it.
* Webhook receiver: verifies the HMAC signature (401 when wrong) and drops a request whose
  ``Idempotency-Key`` it already handled (answering 200), as a careful receiver would.

``script`` queues faults for the next requests: ``("status", code, headers, body)`` answers
without processing, ``("delay", s)`` sleeps before processing (a timeout for a short client
timeout), ``("hold",)`` signals ``held`` and blocks until ``release`` without processing
(the request is lost, as when the sender dies mid-send), ``("ack_lost",)`` processes, then
blocks (the sender never hears the answer).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable, Sequence
from typing import Any

from driftline.alerting.signing import SIGNATURE_HEADER, verify_signature


class LocalServer:
    """Base: records every request and applies the fault script."""

    path = "/"

    def __init__(self, port: int = 0, on_message: Callable[[str, str], None] | None = None,
                 sock: socket.socket | None = None) -> None:
        """Listens on 127.0.0.1:``port``, or on ``sock``: a socket already listening, such as one
        inherited from the process that chose its address (the server never binds, so no other
        process can take the address between the choice and the start)."""
        self.on_message = on_message
        self.requests: list[dict[str, Any]] = []
        self.script: deque[tuple[Any, ...]] = deque()
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": headers, "body": body})
                    action = outer.script.popleft() if outer.script else ("process",)
                if action[0] == "status":
                    return self._reply(action[1], action[2], action[3])
                if action[0] == "delay":
                    time.sleep(action[1])
                if action[0] == "hold":
                    outer.held.set()
                    outer.release.wait(30)
                    return self._reply(503, {}, b"")
                with outer.lock:
                    status, extra, out = outer.handle(self.path, headers, body)
                if action[0] == "ack_lost":
                    outer.held.set()
                    outer.release.wait(30)
                self._reply(status, extra, out)

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client went away (killed, or timed out)
                    pass

        if sock is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        else:
            self._httpd = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
            self._httpd.socket.close()
            self._httpd.socket = sock
            self._httpd.server_name, self._httpd.server_port = "127.0.0.1", sock.getsockname()[1]
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        raise NotImplementedError

    def _told(self, kind: str, text: str) -> None:
        if self.on_message is not None:
            self.on_message(kind, text)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class LocalSlack(LocalServer):
    """A Slack incoming webhook at ``/services/T0/B0/<token>``."""

    def __init__(self, token: str = "XXXXsecretTOKEN", **kw: Any) -> None:
        self.path = f"/services/T0001/B0001/{token}"
        self.messages: list[dict[str, Any]] = []
        super().__init__(**kw)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        text = {"Content-Type": "text/html"}
        if path != self.path:
            return 404, text, b"no_service"
        try:
            msg = json.loads(body)
        except ValueError:
            return 400, text, b"invalid_payload"
        if not isinstance(msg, dict) or not (msg.get("text") or msg.get("blocks")):
            return 400, text, b"invalid_payload"
        if len(msg.get("blocks", [])) > 50:
            return 400, text, b"invalid_blocks"
        self.messages.append(msg)
        self._told("slack", str(msg.get("text") or "(blocks only)"))
        return 200, text, b"ok"


class LocalPagerDuty(LocalServer):
    """PagerDuty Events API v2 at ``/v2/enqueue`` for one routing key."""

    path = "/v2/enqueue"

    def __init__(self, routing_key: str = "R0UT1NGKEY0123456789abcdef012345", **kw: Any) -> None:
        self.routing_key = routing_key
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, str] = {}  # dedup_key -> triggered | resolved
        self.incidents_opened = 0
        super().__init__(**kw)

    def _bad(self, *errors: str) -> tuple[int, dict, bytes]:
        return 400, {"Content-Type": "application/json"}, json.dumps(
            {"status": "invalid event", "message": "Event object is invalid",
             "errors": list(errors)}).encode()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if path != self.path:
            return 404, {}, b""
        try:
            ev = json.loads(body)
        except ValueError:
            return self._bad("Malformed JSON")
        if ev.get("routing_key") != self.routing_key:
            return self._bad("Invalid routing key")
        action = ev.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return self._bad("'event_action' is invalid")
        key = ev.get("dedup_key") or uuid.uuid4().hex
        if action == "trigger":
            p = ev.get("payload") or {}
            missing = [f for f in ("summary", "source", "severity") if not p.get(f)]
            if missing:
                return self._bad(*(f"'payload.{f}' is missing or blank" for f in missing))
            if p["severity"] not in ("critical", "error", "warning", "info"):
                return self._bad("'payload.severity' is invalid")
            if self.incidents.get(key) != "triggered":
                self.incidents_opened += 1
            self.incidents[key] = "triggered"
        elif action == "resolve" and key in self.incidents:
            self.incidents[key] = "resolved"
        self.events.append(ev)
        summary = (ev.get("payload") or {}).get("summary", "")
        self._told("pagerduty", f"{action} {key}" + (f": {summary}" if summary else ""))
        return 202, {"Content-Type": "application/json"}, json.dumps(
            {"status": "success", "message": "Event processed", "dedup_key": key}).encode()


class LocalWebhook(LocalServer):
    """A retraining / generic webhook endpoint that verifies signatures and idempotency keys."""

    path = "/hooks/retrain"

    def __init__(self, secret: str = "whsec-test", tolerance_s: float = 300.0, **kw: Any) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.deliveries: list[dict[str, Any]] = []
        self.seen_keys: set[str] = set()
        self.rejected = 0
        self.clock: Any = time.time  # tests driving an injected clock set it here too
        super().__init__(**kw)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if not verify_signature(self.secret, body, headers.get(SIGNATURE_HEADER.lower()),
                                tolerance_s=self.tolerance_s, now=self.clock()):
            self.rejected += 1
            self._told("webhook", "REJECTED: bad or missing signature")
            return 401, {}, b"bad signature"
        key = headers.get("idempotency-key", "")
        if key in self.seen_keys:
            return 200, {}, b"duplicate ignored"
        self.seen_keys.add(key)
        event = json.loads(body)
        self.deliveries.append({"headers": headers, "event": event})
        self._told("webhook", "signature valid; " + _cloudevent_summary(event))
        return 202, {}, b"accepted"


class LocalRedirect(LocalServer):
    """Answers every POST with a redirect to ``location``."""

    def __init__(self, location: str, status: int = 302, **kw: Any) -> None:
        self.location = location
        self.status = status
        super().__init__(**kw)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        return self.status, {"Location": self.location}, b""


def _cloudevent_summary(event: Any) -> str:
    """The type and a few fields of a CloudEvent (a retraining request), for the console."""
    if not isinstance(event, dict):
        return "request"
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    parts = [f"{k}={data[k]}" for k in ("model", "model_version", "segment", "rule") if data.get(k)]
    return str(event.get("type") or "request") + (": " + ", ".join(parts) if parts else "")


def _port_and_path(url: str, what: str) -> tuple[int, str]:
    from urllib.parse import urlsplit

    from driftline.sdk.errors import ConfigError

    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
        raise ConfigError(f"{what}: a local receiver listens on http://127.0.0.1:PORT/... (got {url!r})")
    return parts.port, parts.path


def _listening_port(sock: socket.socket) -> int | None:
    """The port ``sock`` listens on, None when it is not a listening TCP socket."""
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        return int(sock.getsockname()[1]) if listening and sock.type == socket.SOCK_STREAM else None
    except (OSError, IndexError, TypeError):
        return None


def start_receivers(slack_url: str, pagerduty_url: str, webhook_url: str, *, routing_key: str, secret: str,
                    on_message: Callable[[str, str], None],
                    sockets: Sequence[socket.socket] | None = None) -> list[LocalServer]:
    """A local Slack webhook, PagerDuty Events v2 endpoint and signed-webhook receiver at the
    given URLs (what ``driftline alerts receive`` serves for ``driftline up --demo``); with
    ``sockets``, served on those listening sockets (one per URL, in the same order, each bound to
    its URL's port) instead of binding."""
    from driftline.sdk.errors import ConfigError

    slack_port, path = _port_and_path(slack_url, "--slack-url")
    prefix = "/services/T0001/B0001/"
    if not path.startswith(prefix) or len(path) == len(prefix):
        raise ConfigError(f"--slack-url: the local Slack webhook's path is {prefix}TOKEN (got {path!r})")
    token = path[len(prefix):]
    pd_port, pd_path = _port_and_path(pagerduty_url, "--pagerduty-url")
    if pd_path != LocalPagerDuty.path:
        raise ConfigError(f"--pagerduty-url: the local PagerDuty's path is {LocalPagerDuty.path} (got {pd_path!r})")
    hook_port, _ = _port_and_path(webhook_url, "--webhook-url")
    ports = (slack_port, pd_port, hook_port)
    socks: Sequence[socket.socket | None] = (None, None, None) if sockets is None else sockets
    if sockets is not None:
        bound = tuple(_listening_port(s) for s in sockets)
        if bound != ports:
            raise ConfigError(f"the inherited sockets listen on ports {bound}, the URLs name {ports}")
    servers: list[LocalServer] = []
    try:  # every address is checked before any is bound
        servers.append(LocalSlack(token, port=slack_port, on_message=on_message, sock=socks[0]))
        servers.append(LocalPagerDuty(routing_key, port=pd_port, on_message=on_message, sock=socks[1]))
        servers.append(LocalWebhook(secret, port=hook_port, on_message=on_message, sock=socks[2]))
    except BaseException:
        for s in servers:
            s.close()
        raise
    return servers


__all__ = ["LocalPagerDuty", "LocalRedirect", "LocalServer", "LocalSlack", "LocalWebhook", "start_receivers"]
