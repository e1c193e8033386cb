"""The long-running alerting loop: evaluate rules, record incident events, deliver.

Each tick evaluates every rule against ClickHouse, turns hysteresis verdicts into incident
events (firing, repeat, resolved) and, per event, queues in ONE outbox transaction the channel
messages, the history row for ``driftline.alerts`` and, for rules with ``retrain``, a retraining
request (unless the model is inside that channel's cooldown). Delivery then drains the outbox.

Example::

    svc = AlertService(load_rules("rules.yaml"), driftline.collector.store.connect(url),
                       data_dir="/var/lib/driftline/alerting", registry=CollectorRegistry())
    svc.run()            # until svc.stop() is called (from a signal handler or another thread)
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from driftline.alerting import store
from driftline.alerting.channels import channel_for
from driftline.alerting.channels.email import send_smtp
from driftline.alerting.channels.webhook import render_retrain
from driftline.alerting.delivery import Deliverer, RetryPolicy, http_post
from driftline.alerting.evaluate import Evaluator, Series
from driftline.alerting.incidents import (Alert, build_alert, dedup_key, hysteresis,
                                          series_key)
from driftline.alerting.metrics import AlertMetrics
from driftline.alerting.outbox import Incident, Outbox
from driftline.alerting.rules import RuleSet
from driftline.alerting.ssrf import Resolver, system_resolver
from driftline.collector.store import migrate

log = logging.getLogger("driftline.alerting")
HISTORY = "_history"


class AlertService:
    """Rules → incidents → outbox → channels. ``clock`` returns unix seconds (injectable)."""

    def __init__(self, rules: RuleSet, clickhouse: Any, data_dir: str | Path, *,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 retry: RetryPolicy = RetryPolicy(), resolver: Resolver = system_resolver,
                 post: Callable[..., Any] = http_post,
                 smtp_send: Callable[..., None] = send_smtp) -> None:
        self.rules = rules
        self._ch = clickhouse
        self._clock = clock
        self._stop = threading.Event()
        self.metrics = AlertMetrics(registry if registry is not None else CollectorRegistry())
        if clickhouse is not None:  # None is enough for `alerts test`, which queries nothing
            # Every table, not only driftline.alerts: the rules read drift_metrics and the
            # prediction log, and alerting may start before any collector on an empty store.
            migrate(clickhouse)
        self.outbox = Outbox(Path(data_dir) / "alerting.sqlite3")
        self.evaluator = Evaluator(clickhouse, rules.history_windows, rules.lookback_s)
        self.deliverer = Deliverer(
            self.outbox, dict(rules.channels), self.metrics, clickhouse=clickhouse, clock=clock,
            rng=rng, policy=retry, allow_local=rules.allow_local_development, resolver=resolver,
            post=post, smtp_send=smtp_send)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> list[Alert]:
        """Evaluate every rule once; return the incident events queued."""
        now_ts = self._clock()
        now = dt.datetime.fromtimestamp(now_ts, dt.timezone.utc)
        events: list[Alert] = []
        open_incidents = self.outbox.open_incidents()
        for rule in self.rules.rules:
            try:
                all_series = self.evaluator.evaluate(rule, now)
            except Exception as exc:  # one broken rule or a store hiccup must not stop the rest
                self.metrics.evaluations.labels(rule.name, "error").inc()
                log.error("rule %s: evaluation failed: %s: %s", rule.name, type(exc).__name__, exc)
                continue
            self.metrics.evaluations.labels(rule.name, "ok").inc()
            for series in all_series:
                alert = self._transition(series, open_incidents, now, now_ts)
                if alert is not None:
                    events.append(alert)
        return events

    def _transition(self, series: Series, open_incidents: dict[str, Incident],
                    now: dt.datetime, now_ts: float) -> Alert | None:
        rule = series.rule
        key = series_key(rule.name, series.model, series.model_version, series.segment)
        inc = open_incidents.get(key)
        verdict = hysteresis(series.windows, rule.fire_after, rule.resolve_after)
        dash = self.rules.dashboard_url
        if inc is None and verdict.state == "breaching":
            assert verdict.since is not None
            since = verdict.since.start
            dk = dedup_key(rule.name, series.model, series.model_version, series.segment, since)
            alert = build_alert("firing", series, since, dk, dash, now)
            with self.outbox.transaction():
                self.outbox.open_incident(Incident(
                    key, dk, rule.name, series.model, series.model_version, series.segment,
                    since.isoformat(), now_ts, now_ts, 0))
                self._queue(alert, f"{dk}:firing", now_ts)
                if rule.retrain:
                    self._queue_retrain(alert, rule.retrain, now_ts)
        elif inc is not None and verdict.state == "healthy":
            since = dt.datetime.fromisoformat(inc.since)
            alert = build_alert("resolved", series, since, inc.dedup_key, dash, now)
            with self.outbox.transaction():
                self.outbox.close_incident(key)
                self._queue(alert, f"{inc.dedup_key}:resolved", now_ts)
        elif (inc is not None and rule.repeat_interval_s > 0
              and now_ts - inc.last_notified_at >= rule.repeat_interval_s):
            since = dt.datetime.fromisoformat(inc.since)
            alert = build_alert("repeat", series, since, inc.dedup_key, dash, now)
            with self.outbox.transaction():
                self.outbox.touch_incident(key, now_ts)
                self._queue(alert, f"{inc.dedup_key}:repeat{inc.repeats + 1}", now_ts)
        else:
            return None
        self.metrics.incidents.labels(rule.name, alert.event).inc()
        log.info("incident %s %s: rule %s model %s %s segment %r", alert.dedup_key, alert.event,
                 rule.name, series.model, series.model_version, series.segment)
        return alert

    def _queue(self, alert: Alert, event_key: str, now_ts: float) -> None:
        rule = next(r for r in self.rules.rules if r.name == alert.rule)
        for name in rule.channels:
            ch = self.rules.channels[name]
            key = f"{name}:{event_key}"
            body = channel_for(ch.type).render(alert, key)
            if body is None:  # the channel skips this event (PagerDuty: a repeat)
                continue
            self.outbox.enqueue(key, name, ch.type, body, now_ts)
        key = f"{HISTORY}:{event_key}"
        self.outbox.enqueue(key, HISTORY, "history", store.history_row(alert, key, rule.channels),
                            now_ts)

    def _queue_retrain(self, alert: Alert, channel: str, now_ts: float) -> None:
        ch = self.rules.channels[channel]
        last = self.outbox.cooldown_started(channel, alert.model)
        if last is not None and now_ts - last < ch.cooldown_s:
            log.info("retraining for model %s not requested: channel %s cools down until %s",
                     alert.model, channel,
                     dt.datetime.fromtimestamp(last + ch.cooldown_s, dt.timezone.utc).isoformat())
            return
        key = f"{channel}:{alert.dedup_key}:retrain"
        self.outbox.enqueue(key, channel, "webhook", render_retrain(alert, key), now_ts)
        self.outbox.start_cooldown(channel, alert.model, now_ts)

    # -- delivery and the loop -------------------------------------------------------------
    def deliver(self) -> int:
        """Deliver whatever is due; return how many messages were sent."""
        return self.deliverer.deliver_due()

    def tick(self) -> list[Alert]:
        """One evaluation followed by delivery."""
        events = self.evaluate()
        self.deliver()
        return events

    def send_test(self, channel: str) -> tuple[str, str]:
        """Queue and deliver a test message to ``channel``; return (status, last_error)."""
        ch = self.rules.channels.get(channel)
        if ch is None:
            raise KeyError(f"unknown channel {channel!r}; known: {', '.join(self.rules.channels)}")
        now_ts = self._clock()
        key = f"{channel}:test:{int(now_ts * 1000)}"
        iso = dt.datetime.fromtimestamp(now_ts, dt.timezone.utc).isoformat()
        body = channel_for(ch.type).render_test(channel, key, iso)
        self.outbox.enqueue(key, channel, ch.type, body, now_ts)
        self.deliver()
        for k, _c, status, _a, err in self.outbox.messages():
            if k == key:
                return status, err
        return "unknown", ""

    def run(self, wait: Callable[[float], bool] | None = None) -> None:
        """Tick every ``interval_s`` until :meth:`stop`; deliver retries in between.

        ``wait(seconds)`` sleeps and returns True when stopping (default: the stop event).
        """
        wait = wait or self._stop.wait
        next_eval = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_eval:
                self.evaluate()
                next_eval = now + self.rules.interval_s
            self.deliver()
            wake = self.deliverer.next_wake()
            until = next_eval if wake is None else min(next_eval, wake)
            # A short floor keeps a rate-limited channel from spinning the loop.
            if wait(max(0.02, until - self._clock())):
                break

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step."""
        self._stop.set()

    def close(self) -> None:
        """Release the outbox database."""
        self.outbox.close()


__all__ = ["AlertService"]
