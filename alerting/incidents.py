"""Incidents: hysteresis over window verdicts, and the alert every channel renders.

One incident covers one (rule, model, version, segment) from the first breaching window until
``resolve_after`` healthy windows in a row; channels hear about it once when it opens, again
every ``repeat_interval_s`` while it stays open, and once when it resolves — never per window.

The PagerDuty ``dedup_key`` (and every idempotency key derived from it) is a hash of the rule,
the series and the start of the breach, so it is the same after a restart, even if the local
state were lost, and a receiver that deduplicates sees one incident.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from driftline.alerting.evaluate import FeatureStat, Series, Window


@dataclass(frozen=True)
class Verdict:
    """What the tail of a series says: ``breaching`` (with the first window of the streak),
    ``healthy``, or ``pending`` (neither streak long enough yet)."""

    state: str
    since: Window | None = None


def hysteresis(windows: tuple[Window, ...], fire_after: int, resolve_after: int) -> Verdict:
    """Fire after ``fire_after`` consecutive breaching windows, resolve after ``resolve_after``
    consecutive healthy ones; windows without enough samples are skipped, not counted."""
    decided = [w for w in windows if w.breached is not None]
    streak: list[Window] = []
    for w in reversed(decided):
        if not w.breached:
            break
        streak.append(w)
    if len(streak) >= fire_after:
        return Verdict("breaching", streak[-1])
    healthy = 0
    for w in reversed(decided):
        if w.breached:
            break
        healthy += 1
    # No decided window at all (too little traffic) says nothing: an open incident stays open.
    if decided and healthy >= resolve_after:
        return Verdict("healthy")
    return Verdict("pending")


def series_key(rule: str, model: str, version: str, segment: str) -> str:
    """The identity of a series inside the alerting state."""
    return "\x1f".join((rule, model, version, segment))


def dedup_key(rule: str, model: str, version: str, segment: str, since: dt.datetime) -> str:
    """A stable key for one incident: same inputs, same key, in every process."""
    raw = "\x1f".join((rule, model, version, segment, since.isoformat()))
    return "driftline-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    """Everything a channel needs to describe one incident event.

    ``event`` is ``firing``, ``repeat`` or ``resolved``. ``features`` are the drifted features of
    the latest breaching window, most impact first (most drifted first where no impact is known).
    ``sql`` reproduces the evidence.
    """

    event: str
    dedup_key: str
    rule: str
    kind: str
    statistic: str
    op: str
    threshold: float | None
    severity: str
    model: str
    model_version: str
    segment: str
    since: dt.datetime
    last_window_end: dt.datetime
    value: float | None
    samples: int
    features: tuple[FeatureStat, ...]
    windows: tuple[Window, ...]
    sql: str
    dashboard_link: str
    description: str
    at: dt.datetime
    #: the latest decided window in words, for kinds that have more to say than a value (the
    #: estimate's band and label coverage); "" for the rest
    summary: str = ""

    @property
    def condition(self) -> str:
        """The rule's condition in words, e.g. ``psi > 0.2`` (then the window's summary, if any)."""
        if self.threshold is None:
            base = f"{self.statistic} flagged by the detector"
        else:
            base = f"{self.statistic} {self.op} {self.threshold:g}"
        return f"{base}: {self.summary}" if self.summary else base

    @property
    def title(self) -> str:
        """A one-line summary used as PagerDuty summary, email subject and Slack fallback."""
        where = f"{self.model} {self.model_version}".strip()
        if self.segment:
            where += f" [{self.segment}]"
        verb = "RESOLVED" if self.event == "resolved" else self.severity.upper()
        return f"[{verb}] {self.rule}: {self.condition} on {where}"


def dashboard_link(base: str, model: str, version: str, segment: str, start: dt.datetime,
                   end: dt.datetime) -> str:
    """Deep link to the dashboard's model page for the incident's time range."""
    if not base:
        return ""
    q = {"page": "model", "model": model, "version": version}
    if segment:
        q["segment"] = segment
    q["from"] = start.isoformat().replace("+00:00", "Z")
    q["to"] = end.isoformat().replace("+00:00", "Z")
    return f"{base.rstrip('/')}/?{urlencode(q)}"


def feature_records(alert: Alert) -> list[dict[str, Any]]:
    """``alert.features`` as JSON-safe dicts (webhook bodies and the history table); ``impact``
    only where it is known, so bodies of impact-less windows are as they always were."""
    return [{"feature": f.feature, "detector": f.detector, "statistic": f.statistic,
             "value": f.value, "p_value": f.p_value, "threshold": f.threshold,
             "current_size": f.current_size, "reference_size": f.reference_size,
             **({} if f.impact is None else {"impact": f.impact})}
            for f in alert.features]


def window_records(alert: Alert) -> list[dict[str, Any]]:
    """``alert.windows`` as JSON-safe dicts (webhook bodies and the history table)."""
    return [{"start": w.start.isoformat(), "end": w.end.isoformat(), "value": w.value,
             "samples": w.samples, "breached": w.breached} for w in alert.windows]


def build_alert(event: str, series: Series, since: dt.datetime, key: str, dashboard_url: str,
                now: dt.datetime) -> Alert:
    """Describe ``series`` for an incident event, from its latest decided windows."""
    decided = [w for w in series.windows if w.breached is not None]
    last = decided[-1] if decided else (series.windows[-1] if series.windows else None)
    breaching = [w for w in decided if w.breached]
    latest_bad = breaching[-1] if breaching else last
    rule = series.rule
    end = last.end if last else now
    # The link shows a little context before the breach began.
    margin = (end - since) if end > since else dt.timedelta(hours=1)
    return Alert(
        event=event, dedup_key=key, rule=rule.name, kind=rule.kind, statistic=rule.statistic,
        op=rule.op, threshold=rule.threshold, severity=rule.severity, model=series.model,
        model_version=series.model_version, segment=series.segment, since=since,
        last_window_end=end, value=(last.value if last else None),
        samples=(last.samples if last else 0),
        features=(latest_bad.features if latest_bad and event != "resolved" else ()),
        windows=series.windows[-max(rule.fire_after, rule.resolve_after, 6):],
        sql=series.sql,
        dashboard_link=dashboard_link(dashboard_url, series.model, series.model_version,
                                      series.segment, since - margin, end),
        description=rule.description, at=now,
        summary=(latest_bad.summary if latest_bad and event != "resolved" else (last.summary if last else "")),
    )


__all__ = ["Alert", "Verdict", "build_alert", "dashboard_link", "dedup_key", "feature_records",
           "hysteresis", "series_key", "window_records"]
