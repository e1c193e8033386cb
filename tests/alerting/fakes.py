"""Local HTTP servers that behave as Slack incoming webhooks, PagerDuty Events API v2 and a
retraining endpoint, as their documentation describes. Each binds 127.0.0.1 on port 0.

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
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from driftline.alerting.signing import SIGNATURE_HEADER, verify_signature


class FakeServer:
    """Base: records every request and applies the fault script."""

    path = "/"

    def __init__(self) -> None:
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

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        raise NotImplementedError

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class FakeSlack(FakeServer):
    """A Slack incoming webhook at ``/services/T0/B0/<token>``."""

    def __init__(self, token: str = "XXXXsecretTOKEN") -> None:
        self.path = f"/services/T0001/B0001/{token}"
        self.messages: list[dict[str, Any]] = []
        super().__init__()

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
        return 200, text, b"ok"


class FakePagerDuty(FakeServer):
    """PagerDuty Events API v2 at ``/v2/enqueue`` for one routing key."""

    path = "/v2/enqueue"

    def __init__(self, routing_key: str = "R0UT1NGKEY0123456789abcdef012345") -> None:
        self.routing_key = routing_key
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, str] = {}  # dedup_key -> triggered | resolved
        self.incidents_opened = 0
        super().__init__()

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
        return 202, {"Content-Type": "application/json"}, json.dumps(
            {"status": "success", "message": "Event processed", "dedup_key": key}).encode()


class FakeReceiver(FakeServer):
    """A retraining / generic webhook endpoint that verifies signatures and idempotency keys."""

    path = "/hooks/retrain"

    def __init__(self, secret: str = "whsec-test", tolerance_s: float = 300.0) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.deliveries: list[dict[str, Any]] = []
        self.seen_keys: set[str] = set()
        self.rejected = 0
        self.clock: Any = time.time  # tests driving an injected clock set it here too
        super().__init__()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if not verify_signature(self.secret, body, headers.get(SIGNATURE_HEADER.lower()),
                                tolerance_s=self.tolerance_s, now=self.clock()):
            self.rejected += 1
            return 401, {}, b"bad signature"
        key = headers.get("idempotency-key", "")
        if key in self.seen_keys:
            return 200, {}, b"duplicate ignored"
        self.seen_keys.add(key)
        self.deliveries.append({"headers": headers, "event": json.loads(body)})
        return 202, {}, b"accepted"


class FakeRedirect(FakeServer):
    """Answers every POST with a redirect to ``location``."""

    def __init__(self, location: str, status: int = 302) -> None:
        self.location = location
        self.status = status
        super().__init__()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        return self.status, {"Location": self.location}, b""
