"""Panels over what the detectors wrote (``driftline.drift_metrics``): health, verdicts, evidence.

The Overview's health, alarm budget use and verdicts; the Model page's drift statistics, heatmap
and a feature's tests; the verdict strips, their evidence and series of the Model and Performance
pages. The table is already a row per window, detector, feature and statistic and has no
rollup: each builder returns one :class:`~driftline.dashboard.panel.Query`. Summary rows
(:data:`~driftline.detectors.base.SUMMARY_STATISTICS`: impact, the alarm budget, ...) are left
out of verdicts with :data:`NOT_SUMMARY`. The panels over the prediction log are in ``queries.py``.
"""

from __future__ import annotations

from typing import Any

from driftline.dashboard import health
from driftline.dashboard.panel import Query, in_range, metrics_where, query
from driftline.dashboard.view import View
from driftline.detectors.base import STAT_ALARM_BUDGET, STAT_IMPACT, SUMMARY_STATISTICS


# -- overview ----------------------------------------------------------------------------------
def _families() -> tuple[str, dict[str, Any]]:
    # The detector families of dashboard/health.py, as a SQL expression: 1 drift, 2 performance.
    expr = ("multiIf(detector IN {drift_dets:Array(String)} OR "
            "arrayExists(x -> startsWith(detector, x), {drift_prefixes:Array(String)}), 1, "
            "detector IN {degrade_dets:Array(String)} OR "
            "arrayExists(x -> startsWith(detector, x), {degrade_prefixes:Array(String)}), 2, 0)")
    return expr, {"drift_dets": list(health.DRIFT_DETECTORS), "drift_prefixes": list(health.DRIFT_PREFIXES),
                  "degrade_dets": list(health.DEGRADE_DETECTORS),
                  "degrade_prefixes": list(health.DEGRADE_PREFIXES)}


_SUMMARY = {"summary": sorted(SUMMARY_STATISTICS), "impact": STAT_IMPACT, "budget_stat": STAT_ALARM_BUDGET}
NOT_SUMMARY = "statistic NOT IN {summary:Array(String)}"


def overview_health(start: Any, end: Any) -> Query:
    """Per model and detector window in range (``ms``: its start in Unix milliseconds): whether
    the drift and the performance families judged and gave a verdict in all traffic, whether the
    drift family gave one in any segment, and the window's alarm budget row (JSON, alpha).
    One plain aggregation: the features behind a verdict are :func:`overview_verdicts`."""
    fam, fp = _families()
    return query("overview.health", f"""
SELECT model, toUnixTimestamp64Milli(window_start) AS ms,
       maxIf(drift, fam = 1 AND segment = '' AND {NOT_SUMMARY}) AS drifting,
       countIf(fam = 1 AND segment = '' AND {NOT_SUMMARY}) > 0 AS has_drift,
       maxIf(drift, fam = 2 AND segment = '' AND {NOT_SUMMARY}) AS degraded,
       countIf(fam = 2 AND segment = '' AND {NOT_SUMMARY}) > 0 AS has_perf,
       maxIf(drift, fam = 1 AND {NOT_SUMMARY}) AS any_verdict,
       anyIf(details, statistic = {{budget_stat:String}}) AS budget,
       maxIf(value, statistic = {{budget_stat:String}}) AS alpha
FROM (SELECT model, window_start, segment, statistic, drift, value, details, {fam} AS fam
      FROM driftline.drift_metrics
      WHERE window_start >= toDateTime64({{start:String}}, 3, 'UTC')
        AND window_start < toDateTime64({{end:String}}, 3, 'UTC'))
WHERE fam != 0 OR statistic = {{budget_stat:String}}
GROUP BY model, ms ORDER BY model, ms""", {**in_range(start, end), **fp, **_SUMMARY})


def overview_budget_use(end: Any) -> Query:
    """Per model, how many windows had a data/prediction drift verdict (any segment) in the last
    hour, day and week before ``end``: the use of an alarm budget stated per hour, day or week.
    Only verdict rows are read past the first column (``PREWHERE drift``)."""
    fam, fp = _families()
    return query("overview.budget_use", f"""
SELECT model,
       uniqExactIf(window_start, window_start >= toDateTime64({{end:String}}, 3, 'UTC') - INTERVAL 1 HOUR) AS hour,
       uniqExactIf(window_start, window_start >= toDateTime64({{end:String}}, 3, 'UTC') - INTERVAL 1 DAY) AS day,
       uniqExact(window_start) AS week
FROM driftline.drift_metrics PREWHERE drift
WHERE window_start >= toDateTime64({{end:String}}, 3, 'UTC') - INTERVAL 7 DAY
  AND window_start < toDateTime64({{end:String}}, 3, 'UTC') AND {fam} = 1 AND {NOT_SUMMARY}
GROUP BY model""", {"end": in_range(end, end)["end"], **fp, **_SUMMARY})


def overview_verdicts(start: Any, end: Any) -> Query:
    """Every (model, window, detector, feature) with a verdict (all traffic) from ``start`` (the
    earliest latest window among the models) to ``end``, and what ranks a drifted feature: its
    impact row, else the crossed statistic furthest past its threshold (value / threshold, or
    threshold / p for a p-value test), plus the statistics that crossed (up to 3)."""
    fam, fp = _families()
    return query("overview.verdicts", f"""
SELECT model, toUnixTimestamp64Milli(window_start) AS ms, detector, feature, {fam} AS fam,
       countIf(statistic = {{impact:String}}) > 0 AS has_impact,
       maxIf(value, statistic = {{impact:String}}) AS impact,
       argMaxIf((statistic, value / assumeNotNull(threshold)), value / assumeNotNull(threshold),
                exceeded AND p_value IS NULL AND ifNull(threshold, 0) > 0 AND {NOT_SUMMARY}) AS vs,
       argMinIf((statistic, ifNull(threshold, 0) / assumeNotNull(p_value)), assumeNotNull(p_value),
                exceeded AND ifNull(p_value, 0) > 0 AND {NOT_SUMMARY}) AS ps,
       if(vs.1 != '', vs.1, ps.1) AS statistic_, if(vs.1 != '', vs.2, ps.2) AS ratio,
       arraySlice(arraySort(groupUniqArrayIf(statistic, exceeded AND {NOT_SUMMARY})), 1, 3) AS crossed
FROM driftline.drift_metrics
WHERE window_start >= toDateTime64({{start:String}}, 3, 'UTC')
  AND window_start < toDateTime64({{end:String}}, 3, 'UTC') AND segment = '' AND {fam} != 0
GROUP BY model, ms, detector, feature
HAVING maxIf(drift, {NOT_SUMMARY})""", {**in_range(start, end), **fp, **_SUMMARY})


# -- model page --------------------------------------------------------------------------------
def drift_statistics(v: View) -> Query:
    w, p = metrics_where(v)
    return query("model.drift_statistics", f"""
SELECT detector, statistic, count() AS n, countIf(drift) AS drifting, countIf(exceeded) AS exceeded
FROM driftline.drift_metrics WHERE {w} GROUP BY detector, statistic ORDER BY detector, statistic""", p)


def drift_heatmap(v: View, detector: str, statistic: str) -> Query:
    w, p = metrics_where(v)
    return query("model.drift_heatmap", f"""
SELECT feature, window_start AS t, max(value) AS value, max(drift) AS drift,
       max(exceeded) AS exceeded, any(threshold) AS threshold
FROM driftline.drift_metrics
WHERE {w} AND detector = {{detector:String}} AND statistic = {{statistic:String}} AND feature != '*'
GROUP BY feature, t ORDER BY feature, t""", {**p, "detector": detector, "statistic": statistic})


def feature_tests(v: View, feature: str) -> Query:
    """Latest value of every statistic any detector wrote for ``feature`` in the range: ``drift``
    the detector's verdict on the feature, ``exceeded`` the statistic's own crossing."""
    w, p = metrics_where(v)
    return query("model.feature_tests", f"""
SELECT detector, statistic, argMax(value, window_start) AS last_value,
       argMax(p_value, window_start) AS last_p_value, argMax(threshold, window_start) AS last_threshold,
       argMax(drift, window_start) AS last_drift, argMax(exceeded, window_start) AS last_exceeded,
       max(window_start) AS last_window,
       argMax(reference_size, window_start) AS last_reference_size,
       argMax(current_size, window_start) AS last_current_size, countIf(drift) AS drifted_windows,
       countIf(exceeded) AS exceeded_windows, count() AS windows
FROM driftline.drift_metrics WHERE {w} AND feature = {{feature:String}}
GROUP BY detector, statistic ORDER BY detector, statistic""", {**p, "feature": feature})


# -- detector verdicts and series (Model and Performance pages) --------------------------------
def _detector_filter(detectors: tuple[str, ...], prefixes: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    return ("(detector IN {detectors:Array(String)} OR "
            "arrayExists(x -> startsWith(detector, x), {prefixes:Array(String)}))",
            {"detectors": list(detectors), "prefixes": list(prefixes)})


def detector_verdicts(v: View, detectors: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> Query:
    """One verdict per detector and window (drifting if any of its features has a verdict), with
    the features that drifted (up to 12) and how many it judged. Summary rows do not count."""
    w, p = metrics_where(v)
    cond, cp = _detector_filter(detectors, prefixes)
    return query("detectors.verdicts", f"""
SELECT detector, t, max(verdict) AS drift, countIf(verdict) AS drifted, count() AS judged,
       arraySlice(arraySort(groupArrayIf(feature, verdict)), 1, 12) AS features
FROM (SELECT detector, feature, window_start AS t, max(drift) AS verdict
      FROM driftline.drift_metrics WHERE {w} AND {cond} AND {NOT_SUMMARY}
      GROUP BY detector, feature, t)
GROUP BY detector, t ORDER BY detector, t""", {**p, **cp, **_SUMMARY})


def latest_verdict_evidence(v: View, detectors: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> Query:
    """Per (detector, feature) with a verdict in its detector's latest window: what it measured.
    ``impact`` and ``magnitude`` from the impact row where the detector wrote one; else the
    statistic furthest from its threshold (either side; a test by threshold / p) with its value,
    threshold and p-value. The short flag list ranks and labels its lines with these."""
    w, p = metrics_where(v)
    cond, cp = _detector_filter(detectors, prefixes)
    far = ("multiIf(ifNull(p_value, 0) > 0, ifNull(threshold, 0) / assumeNotNull(p_value), "
           "ifNull(threshold, 0) > 0 AND value > 0, greatest(value / assumeNotNull(threshold), "
           "assumeNotNull(threshold) / value), 0)")
    return query("detectors.latest_evidence", f"""
SELECT detector, feature, countIf(statistic = {{impact:String}}) > 0 AS has_impact,
       maxIf(value, statistic = {{impact:String}}) AS impact,
       maxIf(JSONExtractFloat(details, 'magnitude'), statistic = {{impact:String}}) AS magnitude,
       argMaxIf(tuple(statistic, value, ifNull(threshold, nan), ifNull(p_value, nan), {far}),
                (exceeded, {far}), {NOT_SUMMARY}) AS ev,
       ev.1 AS statistic_, ev.2 AS stat_value, ev.3 AS stat_threshold, ev.4 AS stat_p_value, ev.5 AS ratio
FROM driftline.drift_metrics
WHERE {w} AND {cond} AND (detector, window_start) IN (
    SELECT detector, max(window_start) FROM driftline.drift_metrics WHERE {w} AND {cond} GROUP BY detector)
GROUP BY detector, feature HAVING maxIf(drift, {NOT_SUMMARY})
ORDER BY detector, feature""", {**p, **cp, **_SUMMARY})


def detector_series(v: View, detectors: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> Query:
    """Every (detector, feature, statistic) value per window in the slice, with its threshold and
    verdict. Summary rows do not count."""
    w, p = metrics_where(v)
    cond, cp = _detector_filter(detectors, prefixes)
    return query("detectors.series", f"""
SELECT detector, feature, statistic, window_start AS t, max(value) AS value, any(threshold) AS threshold,
       max(drift) AS drift
FROM driftline.drift_metrics WHERE {w} AND {cond} AND {NOT_SUMMARY}
GROUP BY detector, feature, statistic, t ORDER BY detector, feature, statistic, t LIMIT 20000""",
                 {**p, **cp, **_SUMMARY})


def detector_series_names(v: View, detectors: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> Query:
    """The (detector, feature, statistic) series in the slice, those with verdicts first."""
    w, p = metrics_where(v)
    cond, cp = _detector_filter(detectors, prefixes)
    return query("detectors.series_names", f"""
SELECT detector, feature, statistic, countIf(drift) AS drifted, count() AS windows
FROM driftline.drift_metrics WHERE {w} AND {cond} AND {NOT_SUMMARY}
GROUP BY detector, feature, statistic ORDER BY drifted DESC, detector, feature, statistic LIMIT 2000""",
                 {**p, **cp, **_SUMMARY})


def detector_statistic(v: View, detector: str, feature: str, statistic: str) -> Query:
    """One statistic of one detector and feature per window: value, threshold, verdict, crossing."""
    w, p = metrics_where(v)
    return query("detectors.statistic", f"""
SELECT window_start AS t, max(value) AS value, any(threshold) AS threshold, any(p_value) AS p_value,
       max(drift) AS drift, max(exceeded) AS exceeded
FROM driftline.drift_metrics
WHERE {w} AND detector = {{detector:String}} AND feature = {{feature:String}}
  AND statistic = {{statistic:String}}
GROUP BY t ORDER BY t""", {**p, "detector": detector, "feature": feature, "statistic": statistic})
