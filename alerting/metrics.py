"""Prometheus metrics of the alerting service, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("sent", "retry", "rate_limited", "failed", "refused")


class AlertMetrics:
    """Counters per channel and outcome, incidents per rule, evaluation errors, outbox depth.

    ``outcome`` is one of ``sent``, ``retry`` (will try again), ``rate_limited`` (429, retried
    after Retry-After), ``failed`` (permanent error or retries exhausted) and ``refused`` (the
    URL failed the SSRF check or answered with a redirect).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "driftline_alert_notifications_total", "Notification attempts by channel and outcome.",
            ["channel", "outcome"], registry=registry)
        self.incidents = Counter(
            "driftline_alert_incidents_total", "Incident events (firing, repeat, resolved).",
            ["rule", "event"], registry=registry)
        self.evaluations = Counter(
            "driftline_alert_evaluations_total", "Rule evaluations by outcome (ok, error).",
            ["rule", "outcome"], registry=registry)
        self.outbox_pending = Gauge(
            "driftline_alert_outbox_pending", "Messages waiting in the outbox.", registry=registry)
        self.delivery_seconds = Histogram(
            "driftline_alert_delivery_seconds", "Time to deliver one message attempt.",
            ["channel"], registry=registry)


__all__ = ["OUTCOMES", "AlertMetrics"]
