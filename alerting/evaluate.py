"""Turn a rule into per-window verdicts by querying ClickHouse.

Every rule kind becomes the same shape: for each (model, version, segment) a :class:`Series` of
recent windows, oldest first, each breached (True), healthy (False) or without enough samples
(None). Hysteresis then only looks at the tail of a series (see ``incidents.py``); keeping the
verdicts derivable from stored data means a restarted process reaches the same decisions.

* ``drift`` rules read ``driftline.drift_metrics`` (windows are the detector's windows): with a
  ``threshold``, the named statistic's value against it; without, the detector's verdict on each
  feature (``drift``, the same on every statistic row of a feature), or with ``flag: exceeded``
  whether the named statistic crossed its own threshold. A window's drifted features are listed
  by their impact (the ``impact`` rows data drift writes for each drifted feature: its importance
  to the model times its drift magnitude), highest first; features without an impact row (other
  detectors, stores written before impact existed) follow, by the named statistic's value;
* ``estimated_performance`` and ``realised_performance`` read ``driftline.performance_estimates``
  (the detectors' windows): the estimate's band, or the realised value over the labelled rows,
  against the threshold (see ``rules.py``); each window says it in words (:attr:`Window.summary`);
* ``performance`` reads ``driftline.labeled_predictions``; ``latency``, ``error_rate`` and
  ``volume`` read ``driftline.predictions``; ``shadow_agreement`` pairs primary and shadow
  predictions by request id. Their windows are ``window_s`` buckets aligned to the epoch; only
  complete buckets (ending at or before ``now``) count.

Each series carries the SQL, with every value inlined, that reproduces its evidence; it goes into
retraining requests so that a human or a pipeline can re-run it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from driftline.alerting.rules import ESTIMATION_KINDS, Rule
from driftline.collector.store.tables import PERFORMANCE_ESTIMATES_TABLE, STAT_IMPACT
from driftline.sdk.contract import PREDICTION

DB = "driftline"


def _slice_filters(model: str, version: str, segment: str) -> list[str]:
    """WHERE conditions of a rule's slice; ``'*'`` means no filter, ``'tag=*'`` every value of a tag."""
    where = []
    if model != "*":
        where.append(f"model = {quote(model)}")
    if version != "*":
        where.append(f"model_version = {quote(version)}")
    if segment.endswith("=*"):
        where.append(f"startsWith(segment, {quote(segment[:-1])})")
    elif segment != "*":
        where.append(f"segment = {quote(segment)}")
    return where


@dataclass(frozen=True)
class FeatureStat:
    """One drifted feature's statistic in one window; ``impact`` is the feature's impact score in
    that window (None when the detector wrote none)."""

    feature: str
    detector: str
    statistic: str
    value: float
    p_value: float | None
    threshold: float | None
    current_size: int
    reference_size: int
    impact: float | None = None


@dataclass(frozen=True)
class Window:
    """One window's verdict. ``breached`` is None when the window has too few samples."""

    start: dt.datetime
    end: dt.datetime
    value: float | None
    samples: int
    breached: bool | None
    features: tuple[FeatureStat, ...] = ()
    #: the window in words where a value alone says too little (estimates: band, label coverage)
    summary: str = ""


@dataclass(frozen=True)
class Series:
    """Recent windows (oldest first) of one rule for one model, version and segment."""

    rule: Rule
    model: str
    model_version: str
    segment: str
    windows: tuple[Window, ...]
    sql: str


def quote(value: str) -> str:
    """A ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ts_literal(t: dt.datetime) -> str:
    """A DateTime64(3, 'UTC') literal for an aware or UTC-naive datetime."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return f"toDateTime64({quote(t.isoformat(sep=' ', timespec='milliseconds'))}, 3, 'UTC')"


def utc(t: dt.datetime) -> dt.datetime:
    """Make a datetime returned by clickhouse-connect (naive UTC) aware."""
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


class Evaluator:
    """Query ClickHouse for a rule's recent windows.

    ``client`` is a clickhouse-connect client (``query(sql).result_rows``). ``history_windows``
    bounds how many windows per series are read; ``lookback_s`` bounds how far back.
    """

    def __init__(self, client: Any, history_windows: int = 48, lookback_s: int = 7 * 86400) -> None:
        self._client = client
        self._history = history_windows
        self._lookback_s = lookback_s

    def evaluate(self, rule: Rule, now: dt.datetime) -> list[Series]:
        """All series of ``rule`` as of ``now`` (aware UTC datetime)."""
        k = max(self._history, rule.fire_after, rule.resolve_after)
        if rule.kind == "drift":
            return self._drift(rule, now, k)
        if rule.kind in ESTIMATION_KINDS:
            return self._estimates(rule, now, k)
        return self._bucketed(rule, now, k)

    # -- performance_estimates -------------------------------------------------------------
    def estimate_sql(self, rule: Rule, now: dt.datetime, k: int, model: str, version: str,
                     segment: str) -> str:
        """SQL listing an estimation rule's recent windows; ``'*'`` arguments mean no filter."""
        where = [f"metric = {quote(rule.statistic)}", f"window_end <= {ts_literal(now)}",
                 f"window_start >= {ts_literal(now - dt.timedelta(seconds=self._lookback_s))}"]
        where += _slice_filters(model, version, segment)
        return (
            "SELECT model, model_version, segment, window_start, window_end, estimate, lower, upper,\n"
            "       threshold, verdict, realised, labelled, labelled_share, n\n"
            f"FROM {DB}.{PERFORMANCE_ESTIMATES_TABLE} FINAL\n"
            f"WHERE {' AND '.join(where)}\n"
            "ORDER BY model, model_version, segment, window_start DESC\n"
            f"LIMIT {k} BY model, model_version, segment"
        )

    def _estimates(self, rule: Rule, now: dt.datetime, k: int) -> list[Series]:
        sql = self.estimate_sql(rule, now, k, rule.model, rule.model_version, rule.segment)
        grouped: dict[tuple[str, str, str], list[Window]] = {}
        for model, version, segment, start, end, *row in self._client.query(sql).result_rows:
            grouped.setdefault((model, version, segment), []).append(
                estimate_window(rule, utc(start), utc(end), *row))
        return [Series(rule, m, v, s, tuple(reversed(ws)), self.estimate_sql(rule, now, k, m, v, s))
                for (m, v, s), ws in sorted(grouped.items())]

    # -- drift_metrics ---------------------------------------------------------------------
    def drift_sql(self, rule: Rule, now: dt.datetime, k: int, model: str, version: str,
                  segment: str) -> str:
        """SQL listing a drift rule's recent windows; ``'*'`` arguments mean no filter."""
        flag = "exceeded" if rule.flag == "exceeded" else "drift"
        stat, impact = quote(rule.statistic), quote(STAT_IMPACT)
        # The rule's statistic, and each feature's impact row of the same window to rank by.
        where = [f"statistic IN ({stat}, {impact})", f"window_end <= {ts_literal(now)}",
                 f"window_start >= {ts_literal(now - dt.timedelta(seconds=self._lookback_s))}"]
        where += _slice_filters(model, version, segment)
        if rule.detector:
            where.append(f"detector = {quote(rule.detector)}")
        if rule.features:
            where.append(f"feature IN ({', '.join(quote(f) for f in rule.features)})")
        return (
            "SELECT model, model_version, segment, window_start, max(window_end) AS last_end,\n"
            f"       groupArrayIf((feature, detector, value, p_value, threshold, {flag},\n"
            f"                     reference_size, current_size), statistic = {stat}) AS metrics,\n"
            f"       groupArrayIf((feature, detector, value), statistic = {impact}) AS impacts\n"
            f"FROM {DB}.drift_metrics FINAL\n"
            f"WHERE {' AND '.join(where)}\n"
            "GROUP BY model, model_version, segment, window_start\n"
            "HAVING notEmpty(metrics)\n"
            "ORDER BY model, model_version, segment, window_start DESC\n"
            f"LIMIT {k} BY model, model_version, segment"
        )

    def _drift(self, rule: Rule, now: dt.datetime, k: int) -> list[Series]:
        sql = self.drift_sql(rule, now, k, rule.model, rule.model_version, rule.segment)
        grouped: dict[tuple[str, str, str], list[Window]] = {}
        for model, version, segment, start, end, metrics, impacts in self._client.query(sql).result_rows:
            grouped.setdefault((model, version, segment), []).append(
                self._drift_window(rule, utc(start), utc(end), metrics, impacts))
        return [
            Series(rule, m, v, s, tuple(reversed(ws)), self.drift_sql(rule, now, k, m, v, s))
            for (m, v, s), ws in sorted(grouped.items())
        ]

    @staticmethod
    def _drift_window(rule: Rule, start: dt.datetime, end: dt.datetime,
                      metrics: list[tuple[Any, ...]], impacts: list[tuple[Any, ...]] = ()) -> Window:
        impact = {(f, d): float(v) for f, d, v in impacts}
        stats = [FeatureStat(feature=f, detector=d, statistic=rule.statistic, value=float(v),
                             p_value=p, threshold=t, current_size=int(cur), reference_size=int(ref),
                             impact=impact.get((f, d)))
                 for f, d, v, p, t, _flag, ref, cur in metrics if int(cur) >= rule.min_samples]
        # The verdict (``drift``) or, with ``flag: exceeded``, the statistic's own crossing.
        flags = {(f, d): bool(fl) for f, d, _v, _p, _t, fl, _r, _c in metrics}
        if not stats:
            return Window(start, end, None, max((int(m[7]) for m in metrics), default=0), None)
        if rule.threshold is None:
            drifted = [s for s in stats if flags[(s.feature, s.detector)]]
        else:
            drifted = [s for s in stats if rule.breaches(s.value)]
        worst = (max if rule.op.startswith(">") else min)(s.value for s in stats)
        # Most impact first, so messages can show the top few; without impact rows (old data,
        # detectors that write none) most drifted first. Both sorts are stable.
        drifted.sort(key=lambda s: s.value, reverse=rule.op.startswith(">"))
        drifted.sort(key=lambda s: -s.impact if s.impact is not None else float("inf"))
        return Window(start, end, worst, max(s.current_size for s in stats), bool(drifted),
                      tuple(drifted))

    # -- predictions, bucketed -------------------------------------------------------------
    def bucket_sql(self, rule: Rule, start: dt.datetime, end: dt.datetime, model: str,
                   version: str, segment: str) -> str:
        """SQL computing a non-drift rule's metric per ``window_s`` bucket in [start, end)."""
        w = rule.window_s
        p = "p." if rule.kind == "shadow_agreement" else ""
        where = [f"{p}timestamp >= {ts_literal(start)}", f"{p}timestamp < {ts_literal(end)}"]
        if model != "*":
            where.append(f"{p}model = {quote(model)}")
        if version != "*":
            where.append(f"{p}model_version = {quote(version)}")
        seg_expr = "''"
        if segment:
            tag, _, val = segment.partition("=")
            if val == "*":
                where.append(f"mapContains({p}tags, {quote(tag)})")
                seg_expr = f"concat({quote(tag + '=')}, {p}tags[{quote(tag)}])"
            else:
                where.append(f"{p}tags[{quote(tag)}] = {quote(val)}")
                seg_expr = quote(segment)
        version_expr = f"{p}model_version" if rule.per_version else "''"
        if rule.kind == "shadow_agreement":
            source = (f"{DB}.{PREDICTION.table} AS p INNER JOIN {DB}.{PREDICTION.table} AS s\n"
                      "     ON s.model = p.model AND s.request_id = p.request_id")
            where += ["p.variant = 'primary'", "s.variant = 'shadow'"]
        elif rule.kind == "performance":
            source = f"{DB}.labeled_predictions"
            where.append("variant != 'shadow'")
        else:
            source = f"{DB}.{PREDICTION.table}"
            where.append("variant != 'shadow'")
        return (
            f"SELECT {p}model AS m, {version_expr} AS v, {seg_expr} AS seg,\n"
            f"       intDiv(toUnixTimestamp({p}timestamp), {w}) * {w} AS bucket,\n"
            f"       count() AS n, {_metric(rule)} AS value\n"
            f"FROM {source}\n"
            f"WHERE {' AND '.join(where)}\n"
            "GROUP BY m, v, seg, bucket\nORDER BY m, v, seg, bucket"
        )

    def _bucketed(self, rule: Rule, now: dt.datetime, k: int) -> list[Series]:
        w = rule.window_s
        end_ts = int(now.timestamp()) // w * w
        start_ts = end_ts - k * w
        start = dt.datetime.fromtimestamp(start_ts, dt.timezone.utc)
        end = dt.datetime.fromtimestamp(end_ts, dt.timezone.utc)
        sql = self.bucket_sql(rule, start, end, rule.model, rule.model_version, rule.segment)
        cells: dict[tuple[str, str, str], dict[int, tuple[int, float | None]]] = {}
        for m, v, seg, bucket, n, value in self._client.query(sql).result_rows:
            cells.setdefault((m, v, seg), {})[int(bucket)] = (int(n), value)
        if rule.kind == "volume":
            # Silence is what a volume rule is for: series that sent nothing in the whole
            # range still need windows of zero, so keys come from a longer look back.
            for key in self._recent_keys(rule, now):
                cells.setdefault(key, {})
        out = []
        for (m, v, seg), by_bucket in sorted(cells.items()):
            windows = []
            for b in range(start_ts, end_ts, w):
                n, value = by_bucket.get(b, (0, None))
                if rule.kind == "volume":
                    value, verdict = float(n), rule.breaches(float(n))
                elif value is None or n < max(rule.min_samples, 1) or value != value:
                    value, verdict = None, None
                else:
                    value = float(value)
                    verdict = rule.breaches(value)
                windows.append(Window(dt.datetime.fromtimestamp(b, dt.timezone.utc),
                                      dt.datetime.fromtimestamp(b + w, dt.timezone.utc),
                                      value, n, verdict))
            out.append(Series(rule, m, v, seg, tuple(windows),
                              self.bucket_sql(rule, start, end, m, v or "*", seg or "")))
        return out

    def _recent_keys(self, rule: Rule, now: dt.datetime) -> list[tuple[str, str, str]]:
        start = now - dt.timedelta(seconds=self._lookback_s)
        sql = self.bucket_sql(rule, start, now, rule.model, rule.model_version, rule.segment)
        sql = f"SELECT DISTINCT m, v, seg FROM ({sql})"
        return [tuple(r) for r in self._client.query(sql).result_rows]  # type: ignore[misc]


def estimate_window(rule: Rule, start: dt.datetime, end: dt.datetime, estimate: float | None,
                    lower: float | None, upper: float | None, threshold: float | None, verdict: bool,
                    realised: float | None, labelled: int, share: float, n: int) -> Window:
    """One ``performance_estimates`` row as a rule's window, with its summary, e.g. "estimated
    accuracy 0.81 [0.77, 0.85], below 0.90, over 1,000 predictions; 40 % labelled so far:
    realised 0.83"."""
    m = rule.statistic
    above = rule.op.startswith(">")
    thr = rule.threshold if rule.threshold is not None else threshold
    side = "" if thr is None else f", {'above' if above else 'below'} {thr:.2f}"
    band = "" if lower is None or upper is None else f" [{lower:.2f}, {upper:.2f}]"
    est = "no estimate" if estimate is None else f"{estimate:.2f}{band}"
    so_far = (f"{share * 100:.0f} % labelled so far: realised {realised:.2f}" if realised is not None
              else "no labels yet")
    if rule.kind == "estimated_performance":
        samples = int(n)
        if estimate is None or samples < rule.min_samples:
            breached = None
        elif rule.threshold is None:
            breached = bool(verdict)
        else:  # the whole band past the threshold
            bound = lower if above else upper
            breached = None if bound is None else rule.breaches(float(bound))
        text = f"estimated {m} {est}{side}, over {samples:,} predictions; {so_far}"
        return Window(start, end, estimate, samples, breached, summary=text)
    samples = int(labelled)
    breached = None if realised is None or samples < max(rule.min_samples, 1) else rule.breaches(float(realised))
    real = "no labels yet" if realised is None else f"{realised:.2f}"
    text = (f"realised {m} {real}{side}, over {samples:,} labelled predictions ({share * 100:.0f} % of "
            f"{int(n):,}); estimated {est}")
    return Window(start, end, realised, samples, breached, summary=text)


def _metric(rule: Rule) -> str:
    s = rule.statistic
    if rule.kind == "performance":
        correct = ("ifNull(label_str, toString(label_num)) = "
                   "ifNull(prediction_label, toString(prediction_num))")
        return {
            "accuracy": f"avg({correct})",
            "error_rate": f"1 - avg({correct})",
            "mae": "avg(abs(label_num - prediction_num))",
            "rmse": "sqrt(avg(pow(label_num - prediction_num, 2)))",
        }[s]
    if rule.kind == "latency":
        q = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
        if s in q:
            return f"quantile({q[s]})(latency_ms)"
        return {"mean": "avg(latency_ms)", "max": "max(latency_ms)"}[s]
    if rule.kind == "error_rate":
        return "avg(status = 'error')"
    if rule.kind == "volume":
        return "count()"
    # shadow_agreement: same label, or numeric outputs within the tolerance
    return ("avg(ifNull(if(p.prediction_label IS NOT NULL AND s.prediction_label IS NOT NULL, "
            "p.prediction_label = s.prediction_label, "
            f"abs(p.prediction_num - s.prediction_num) <= {float(rule.tolerance)!r}), 0))")


__all__ = ["Evaluator", "FeatureStat", "Series", "Window", "estimate_window", "quote", "ts_literal", "utc"]
