"""Delivery of queued messages: HTTP without redirects, retries, rate limits.

* Every URL passes the SSRF check right before sending, and the connection goes to the address
  that passed (no second lookup). A 3xx answer is a refusal: redirects are never followed.
* 2xx is success. 429 waits for ``Retry-After`` (and pauses the whole channel, since Slack and
  PagerDuty limit per webhook / routing key). 5xx, timeouts and connection errors retry with
  jittered exponential backoff. Other 4xx (Slack ``invalid_payload``, ``no_service``;
  PagerDuty 400) are permanent: retrying would fail the same way.
* A token bucket per channel keeps under the documented limits (Slack about one message per
  second per webhook, PagerDuty about 120 events per minute per routing key).
* Retries never sleep: a message gets a ``next_at`` time and the loop moves on.
* Log lines name the channel and the status, never the URL path, routing key or secret.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.alerting import store
from driftline.alerting.channels import channel_for
from driftline.alerting.channels.email import send_smtp
from driftline.alerting.metrics import AlertMetrics
from driftline.alerting.outbox import Entry, Outbox
from driftline.alerting.rules import ChannelConfig
from driftline.alerting.ssrf import Resolver, Target, UnsafeURLError, check_url, system_resolver

log = logging.getLogger("driftline.alerting")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``base_s * 2**(attempt-1)`` capped at ``cap_s``, half of it jittered;
    ``max_attempts`` tries in all; ``max_retry_after_s`` caps a server's Retry-After."""

    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 10
    max_retry_after_s: float = 3600.0


@dataclass(frozen=True)
class HttpResult:
    """A response: status, lower-cased headers, the first 4 KiB of the body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = target.address
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # Certificate checked against the host name, although we dialled the pinned address.
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def http_post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float,
              context: ssl.SSLContext | None = None) -> HttpResult:
    """POST ``body`` to a checked target; never follows redirects."""
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPS(target, timeout_s, context or ssl.create_default_context())
    else:
        conn = _PinnedHTTP(target, timeout_s)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(4096)
        return HttpResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class RateLimiter:
    """A token bucket per channel (burst of one) plus pauses ordered by 429 answers."""

    def __init__(self) -> None:
        self._free_at: dict[str, float] = {}

    def ready(self, channel: str, now: float) -> bool:
        """May ``channel`` send now?"""
        return self._free_at.get(channel, 0.0) <= now

    def ready_at(self) -> float | None:
        """The earliest time any paused channel may send again."""
        return min(self._free_at.values(), default=None)

    def took(self, channel: str, now: float, rate_per_s: float) -> None:
        """Note a send on ``channel``."""
        if rate_per_s > 0:
            self._free_at[channel] = max(self._free_at.get(channel, 0.0), now + 1.0 / rate_per_s)

    def pause(self, channel: str, until: float) -> None:
        """Hold ``channel`` until ``until`` (a 429 answer)."""
        self._free_at[channel] = max(self._free_at.get(channel, 0.0), until)


# _Retry and _Permanent are internal control flow, not in the error tree (sdk/errors.py): raised
# by the senders below and caught in this module, which reschedules or fails the message.
class _Retry(Exception):
    def __init__(self, reason: str, after_s: float | None = None, rate_limited: bool = False):
        super().__init__(reason)
        self.after_s = after_s
        self.rate_limited = rate_limited


# Not in the error tree: internal control flow, as _Retry above.
class _Permanent(Exception):
    def __init__(self, reason: str, refused: bool = False):
        super().__init__(reason)
        self.refused = refused


class Deliverer:
    """Send due outbox messages to their channels.

    ``post`` (default :func:`http_post`) and ``smtp_send`` are injectable for tests of failure
    modes; integration tests use the real ones against local servers.
    """

    def __init__(self, outbox: Outbox, channels: dict[str, ChannelConfig], metrics: AlertMetrics,
                 *,
                 clickhouse: Any = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, policy: RetryPolicy = RetryPolicy(),
                 allow_local: bool = False, resolver: Resolver = system_resolver,
                 post: Callable[..., HttpResult] = http_post,
                 smtp_send: Callable[[ChannelConfig, dict[str, Any], str], None] = send_smtp,
                 ) -> None:
        self._outbox = outbox
        self._channels = channels
        self._metrics = metrics
        self._ch = clickhouse
        self._clock = clock
        self._rng = rng or random.Random()
        self._policy = policy
        self._allow_local = allow_local
        self._resolver = resolver
        self._post = post
        self._smtp_send = smtp_send
        self.limiter = RateLimiter()

    def deliver_due(self, max_rounds: int = 1000) -> int:
        """Send due messages, oldest first per channel, within rate limits; return how many
        were sent. Returns when nothing more is due or every due channel is paused."""
        sent = 0
        for _ in range(max_rounds):
            progressed = False
            for entry in self._outbox.due(self._clock()):
                now = self._clock()
                if not self.limiter.ready(entry.channel, now):
                    continue
                ch = self._channels.get(entry.channel)
                self.limiter.took(entry.channel, now, ch.rate_per_s if ch else 0.0)
                progressed = True
                sent += self._attempt(entry, ch)
            if not progressed:
                break
        self._metrics.outbox_pending.set(self._outbox.pending())
        return sent

    def next_wake(self) -> float | None:
        """When delivery may have something to do next (a message due or a pause ending)."""
        due = self._outbox.next_due_at()
        if due is None:
            return None
        return max(due, self.limiter.ready_at() or due) if due > self._clock() else due

    def _attempt(self, entry: Entry, ch: ChannelConfig | None) -> bool:
        name = entry.channel
        started = time.perf_counter()
        try:
            if entry.kind == "history":
                if self._ch is None:
                    raise _Permanent("no ClickHouse client for history rows")
                try:
                    store.insert(self._ch, entry.body)
                except Exception as exc:  # the store may be restarting: keep the row
                    raise _Retry(f"history insert failed: {type(exc).__name__}") from None
            elif ch is None:
                raise _Permanent(f"channel {name!r} is no longer configured")
            else:
                channel_for(ch.type).send(ch, entry.body, entry.key, _EntryTransport(self, entry))
        except _Retry as r:
            self._retry(entry, r)
            return False
        except _Permanent as p:
            outcome = "refused" if p.refused else "failed"
            self._metrics.notifications.labels(name, outcome).inc()
            log.error("alert %s to channel %s %s: %s", entry.key, name, outcome, p)
            self._outbox.mark_failed(entry.key, self._clock(), str(p))
            return False
        finally:
            self._metrics.delivery_seconds.labels(name).observe(time.perf_counter() - started)
        self._metrics.notifications.labels(name, "sent").inc()
        self._outbox.mark_sent(entry.key, self._clock())
        log.info("alert %s delivered to channel %s", entry.key, name)
        return True

    def _retry(self, entry: Entry, r: _Retry) -> None:
        now = self._clock()
        attempt = entry.attempts + 1
        if attempt >= self._policy.max_attempts:
            self._metrics.notifications.labels(entry.channel, "failed").inc()
            log.error("alert %s to channel %s failed after %d attempts: %s", entry.key,
                      entry.channel, attempt, r)
            self._outbox.mark_failed(entry.key, now, f"gave up: {r}")
            return
        if r.after_s is not None:
            wait = min(r.after_s, self._policy.max_retry_after_s)
            self.limiter.pause(entry.channel, now + wait)
        else:
            step = min(self._policy.cap_s, self._policy.base_s * 2 ** (attempt - 1))
            wait = step / 2 + self._rng.uniform(0, step / 2)
        self._metrics.notifications.labels(
            entry.channel, "rate_limited" if r.rate_limited else "retry").inc()
        log.warning("alert %s to channel %s: %s; retry in %.1fs", entry.key, entry.channel, r, wait)
        self._outbox.retry_at(entry.key, now + wait, str(r))

    def _send_email(self, ch: ChannelConfig, body: dict[str, Any], key: str) -> None:
        import smtplib

        try:
            self._smtp_send(ch, body, key)
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise _Retry(f"SMTP {exc.smtp_code}") from None
            raise _Permanent(f"SMTP {exc.smtp_code}") from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS / no AUTH: configuration, not luck
            raise _Permanent(f"SMTP {type(exc).__name__}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _Retry(f"SMTP error {type(exc).__name__}") from None

    def _send_http(self, ch: ChannelConfig, body: bytes, headers: dict[str, str],
                   entry: Entry) -> None:
        assert ch.url is not None
        try:
            target = check_url(ch.url.reveal(), allow_local=self._allow_local,
                               resolver=self._resolver)
        except UnsafeURLError as exc:
            raise _Permanent(str(exc), refused=True) from None
        try:
            res = self._post(target, body, headers, ch.timeout_s)
        except (TimeoutError, socket.timeout):
            raise _Retry("timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(f"connection error {type(exc).__name__}") from None
        status = res.status
        if 200 <= status < 300:
            return
        detail = res.body[:200].decode("utf-8", "replace").strip()
        if 300 <= status < 400:
            raise _Permanent(f"HTTP {status} redirect refused (redirects are not followed)",
                             refused=True)
        if status == 429:
            after = parse_retry_after(res.headers.get("retry-after"), self._clock())
            if after is None:
                step = min(self._policy.cap_s, self._policy.base_s * 2 ** entry.attempts)
                after = step / 2 + self._rng.uniform(0, step / 2)
            raise _Retry(f"HTTP 429 {detail}", after_s=after, rate_limited=True)
        if status >= 500 or status == 408:
            raise _Retry(f"HTTP {status} {detail}")
        raise _Permanent(f"HTTP {status} {detail}")


class _EntryTransport:
    """The :class:`~driftline.alerting.channels.Transport` lent to a channel for one entry:
    failures come back as ``_Retry``/``_Permanent``, which :meth:`Deliverer._attempt` sorts."""

    def __init__(self, deliverer: Deliverer, entry: Entry) -> None:
        self._deliverer = deliverer
        self._entry = entry

    def now(self) -> float:
        return self._deliverer._clock()

    def post(self, config: ChannelConfig, body: bytes, headers: dict[str, str]) -> None:
        self._deliverer._send_http(config, body, headers, self._entry)

    def send_mail(self, config: ChannelConfig, body: dict[str, Any], key: str) -> None:
        self._deliverer._send_email(config, body, key)


__all__ = ["Deliverer", "HttpResult", "RateLimiter", "RetryPolicy", "http_post",
           "parse_retry_after"]
