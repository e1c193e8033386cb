"""Every panel's query over the prediction log, labels, outcomes and alerts, page by page.

Aggregation happens in ClickHouse; pages only plot. Each builder returns a
:class:`~driftline.dashboard.panel.Query`: the rollup SQL of ``rollup_queries.py`` where the
rollups can answer (the same answers), else SQL over the raw tables; ``raw=True`` forces the
latter. ``panel.py`` runs them (cached) and holds the clauses they share. The panels over what the
detectors wrote (``drift_metrics``) are in ``detector_queries.py``. The benchmark runs the same
builders uncached.
"""

from __future__ import annotations

from typing import Any

from driftline.collector.store.free_text import TEXT_RULE
from driftline.collector.store.rollup_sql import PAIR_KEY_SQL, PAIR_LABEL_SQL
from driftline.dashboard import rollup_queries as rq
from driftline.dashboard.panel import (
    CONF, IN_RANGE, NOT_SHADOW, P, T, Query, either, in_range, panel, query, served_where, slice_where,
)
from driftline.dashboard.view import View
from driftline.sdk.contract import LABEL, OUTCOME


# -- catalogue and filters ---------------------------------------------------------------------
def catalog(raw: bool = False) -> Query:
    """Every model and version ever logged, with volume and first/last event."""
    if not raw:
        return query("catalog", rq.catalog(), {})
    return query("catalog", f"""
SELECT model, model_version, count() AS predictions, min(timestamp) AS first_seen,
       max(timestamp) AS last_seen
FROM {P} GROUP BY model, model_version ORDER BY model, model_version""", {})


def segments(v: View) -> Query:
    """Tag values seen in a bounded sample of the slice (a segment is ``tag=value``)."""
    w, p = slice_where(v.with_(segment=""))
    return query("segments", f"""
SELECT concat(k, '=', val) AS segment, count() AS n
FROM (SELECT tags FROM {P} WHERE {w} LIMIT 200000)
ARRAY JOIN mapKeys(tags) AS k, mapValues(tags) AS val
GROUP BY segment ORDER BY n DESC LIMIT 50""", p)


def features(v: View) -> Query:
    """Input feature names and kinds, from a bounded sample of the slice."""
    w, p = slice_where(v, shadow=False)
    return query("features", f"""
SELECT name, kind, count() AS n FROM (
  SELECT arrayJoin(arrayConcat(arrayMap(x -> (x, 'numeric'), mapKeys(features_num)),
                               arrayMap(x -> (x, 'categorical'), mapKeys(features_str)),
                               arrayMap(x -> (x, 'categorical'), mapKeys(features_bool)))) AS f,
         f.1 AS name, f.2 AS kind
  FROM (SELECT features_num, features_str, features_bool FROM {P} WHERE {w} LIMIT 20000))
GROUP BY name, kind ORDER BY name""", p)


# -- overview ----------------------------------------------------------------------------------
def overview_models(start: Any, end: Any, raw: bool = False) -> Query:
    span = max(1.0, (end - start).total_seconds())
    return either("overview.models", None if raw else rq.split(start, end, 3600),  # whole hours: hourly tier
                   rq.overview_models, lambda: (f"""
SELECT model, uniqExact(model_version) AS versions, count() AS predictions,
       count() / {{span:Float64}} AS per_s,
       quantileTDigest(0.5)(latency_ms) AS p50_ms, quantileTDigest(0.95)(latency_ms) AS p95_ms,
       quantileTDigest(0.99)(latency_ms) AS p99_ms,
       countIf(status != 'ok') / count() AS error_rate, max(timestamp) AS last_seen
FROM {P} WHERE {IN_RANGE}
GROUP BY model ORDER BY predictions DESC""", in_range(start, end)), span=span)


def overview_traffic(start: Any, end: Any, bucket_s: int, raw: bool = False) -> Query:
    return either("overview.traffic", None if raw else rq.split(start, end, bucket_s),
                   rq.overview_traffic, lambda: (f"""
SELECT model, {T} AS t, count() AS n FROM {P} WHERE {IN_RANGE}
GROUP BY model, t ORDER BY model, t""", {**in_range(start, end), "bucket": bucket_s}))


def open_alerts() -> Query:
    """Incidents whose latest event is not ``resolved``."""
    return query("alerts.open", """
SELECT incident, argMax(rule, event_time) AS rule, argMax(severity, event_time) AS severity,
       argMax(model, event_time) AS model, argMax(model_version, event_time) AS model_version,
       argMax(segment, event_time) AS segment, argMax(condition, event_time) AS condition,
       min(since) AS since, argMax(event, event_time) AS last_event, max(event_time) AS updated
FROM driftline.alerts FINAL GROUP BY incident HAVING last_event != 'resolved'
ORDER BY since""", {})


# -- model page --------------------------------------------------------------------------------
def volume(v: View, raw: bool = False) -> Query:
    return panel("model.volume", v, raw, rq.volume, lambda w: f"""
SELECT {T} AS t, variant, count() AS n, countIf(status != 'ok') AS errors
FROM {P} WHERE {w} GROUP BY t, variant ORDER BY t, variant""")


def latency(v: View, raw: bool = False) -> Query:
    return panel("model.latency", v, raw, rq.latency, lambda w: f"""
SELECT {T} AS t, quantileTDigest(0.5)(latency_ms) AS p50, quantileTDigest(0.95)(latency_ms) AS p95,
       quantileTDigest(0.99)(latency_ms) AS p99
FROM {P} WHERE {w} GROUP BY t ORDER BY t""", served_where)


def prediction_labels(v: View, raw: bool = False) -> Query:
    return panel("model.prediction_labels", v, raw, rq.prediction_labels, lambda w: f"""
SELECT {T} AS t, ifNull(prediction_label, '(none)') AS label, count() AS n
FROM {P} WHERE {w} AND prediction_label IS NOT NULL
GROUP BY t, label ORDER BY t, label LIMIT 5000""", served_where)


def prediction_values(v: View, raw: bool = False) -> Query:
    return panel("model.prediction_values", v, raw, rq.prediction_values, lambda w: f"""
SELECT {T} AS t, quantileTDigest(0.1)(prediction_num) AS p10,
       quantileTDigest(0.5)(prediction_num) AS p50, quantileTDigest(0.9)(prediction_num) AS p90
FROM {P} WHERE {w} AND prediction_num IS NOT NULL AND prediction_label IS NULL
GROUP BY t ORDER BY t""", served_where)


def confidence(v: View, raw: bool = False) -> Query:
    return panel("model.confidence", v, raw, rq.confidence, lambda w: f"""
SELECT {T} AS t, avg({CONF}) AS mean, quantileTDigest(0.1)({CONF}) AS p10,
       quantileTDigest(0.5)({CONF}) AS p50
FROM {P} WHERE {w} AND notEmpty(prediction_scores) GROUP BY t ORDER BY t""", served_where)


def reference_profile(model: str, version: str) -> Query:
    return query("model.reference", """
SELECT model_version, created_at, source, n_rows, profile FROM driftline.references FINAL
WHERE model = {model:String} AND (model_version = {version:String} OR {version:String} = '')
  AND is_deleted = 0
ORDER BY created_at DESC LIMIT 1""", {"model": model, "version": version})


def numeric_edges(v: View, feature: str, raw: bool = False) -> Query:
    """Deciles of ``feature`` in ``v`` (bins for a reference taken from the log)."""
    return panel("model.feature_edges", v, raw, rq.numeric_edges, lambda w: f"""
SELECT quantilesTDigest(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)(x) AS q, min(x) AS lo,
       max(x) AS hi
FROM (SELECT features_num[{{feature:String}}] AS x FROM {P}
      WHERE {w} AND mapContains(features_num, {{feature:String}}))""", served_where, rq.feature_split,
                  feature=feature)


def numeric_hist(v: View, feature: str, edges: list[float], raw: bool = False) -> Query:
    """Counts and sums per reference bin (bin i = how many edges are <= x, as the detectors).

    From the hourly feature rollup the counts are exact except inside the bins (about 1/32 of an hour's
    values each, one per hour at most) that each edge cuts, which are split by a density fitted to
    each bin's mean; ``raw=True`` counts exactly from the prediction log (it reads every row's
    feature map: seconds over millions of rows)."""
    return panel("model.feature_hist", v, raw, rq.numeric_hist, lambda w: f"""
SELECT arraySum(arrayMap(e -> x >= e, {{edges:Array(Float64)}})) AS bin, count() AS n, sum(x) AS s
FROM (SELECT features_num[{{feature:String}}] AS x FROM {P}
      WHERE {w} AND mapContains(features_num, {{feature:String}}))
GROUP BY bin ORDER BY bin""", served_where, rq.feature_split, feature=feature,
                  edges=[float(e) for e in edges])


def categorical_hist(v: View, feature: str, raw: bool = False) -> Query:
    """Top categories of ``feature`` (free-text values left out: see ``dashboard/text_panel.py``)."""
    return panel("model.feature_categories", v, raw, rq.categorical_hist, lambda w: f"""
SELECT if(mapContains(features_str, {{feature:String}}), features_str[{{feature:String}}],
          toString(features_bool[{{feature:String}}])) AS category, count() AS n
FROM {P} WHERE {w} AND (mapContains(features_str, {{feature:String}})
                        OR mapContains(features_bool, {{feature:String}}))
  AND NOT (mapContains(features_str, {{feature:String}}) AND {TEXT_RULE.sql("features_str[{feature:String}]")})
GROUP BY category ORDER BY n DESC LIMIT 30""", served_where, rq.feature_split, feature=feature)


# -- performance -------------------------------------------------------------------------------
def _labels_join(v: View, extra: str = "") -> tuple[str, dict[str, Any]]:
    # Only labels of predictions in range, found through the labels table's primary key
    # (model, prediction_id); the latest label per prediction counts, whenever it was stamped.
    w, p = slice_where(v, shadow=False)
    sql = f"""
FROM (SELECT {extra}event_id, timestamp, prediction_label, prediction_num FROM {P} WHERE {w}) AS pr
LEFT JOIN (SELECT prediction_id, argMax(label_str, timestamp) AS label_str,
                  argMax(label_num, timestamp) AS label_num, max(timestamp) AS labelled_at
           FROM driftline.{LABEL.table}
           WHERE model = {{model:String}} AND prediction_id IN (SELECT event_id FROM {P} WHERE {w})
           GROUP BY prediction_id) AS lb ON lb.prediction_id = pr.event_id"""
    return sql, p


def _variant_labels_join(v: View) -> tuple[str, dict[str, Any]]:
    return _labels_join(v, extra="variant, ")


LABELLED = "lb.prediction_id != toUUID('00000000-0000-0000-0000-000000000000')"


def performance(v: View, raw: bool = False) -> Query:
    return panel("performance.over_time", v, raw, rq.performance, lambda j: f"""
SELECT toStartOfInterval(pr.timestamp, toIntervalSecond({{bucket:UInt32}})) AS t,
       count() AS predictions, countIf({LABELLED}) AS labelled,
       avgIf(pr.prediction_label = lb.label_str, {LABELLED} AND lb.label_str IS NOT NULL) AS accuracy,
       avgIf(abs(pr.prediction_num - lb.label_num),
             {LABELLED} AND lb.label_num IS NOT NULL AND pr.prediction_label IS NULL) AS mae,
       sqrt(avgIf(pow(pr.prediction_num - lb.label_num, 2),
             {LABELLED} AND lb.label_num IS NOT NULL AND pr.prediction_label IS NULL)) AS rmse,
       avgIf(dateDiff('millisecond', pr.timestamp, lb.labelled_at) / 1000, {LABELLED}) AS label_delay_s
{j} GROUP BY t ORDER BY t""", _labels_join)


def confusion(v: View, raw: bool = False) -> Query:
    return panel("performance.confusion", v, raw, rq.confusion, lambda j: f"""
SELECT lb.label_str AS actual, pr.prediction_label AS predicted, count() AS n
{j} WHERE {LABELLED} AND lb.label_str IS NOT NULL AND pr.prediction_label IS NOT NULL
GROUP BY actual, predicted ORDER BY actual, predicted LIMIT 400""", _labels_join)


# -- shadow and A/B ----------------------------------------------------------------------------
def _pairs(v: View) -> tuple[str, dict[str, Any]]:
    # A shadow row shares its primary row's request id and row tag: group by them instead of a
    # self-join (the same key and label as the rollups' pairs).
    w, p = slice_where(v)
    sql = f"""
FROM (SELECT {PAIR_KEY_SQL} AS rid,
             minIf(timestamp, variant = 'primary') AS ts,
             anyIf({PAIR_LABEL_SQL}, variant = 'primary') AS p_label,
             anyIf({PAIR_LABEL_SQL}, variant LIKE 'shadow%') AS s_label,
             anyIf(coalesce(prediction_num, {CONF}), variant = 'primary') AS p_value,
             anyIf(coalesce(prediction_num, {CONF}), variant LIKE 'shadow%') AS s_value,
             anyIf(latency_ms, variant = 'primary') AS p_ms,
             anyIf(latency_ms, variant LIKE 'shadow%') AS s_ms,
             anyIf(status, variant = 'primary') AS p_status,
             anyIf(status, variant LIKE 'shadow%') AS s_status
      FROM {P} WHERE {w} AND (variant = 'primary' OR variant LIKE 'shadow%')
      GROUP BY rid
      HAVING countIf(variant = 'primary') > 0 AND countIf(variant LIKE 'shadow%') > 0)"""
    return sql, p


def shadow_agreement(v: View, raw: bool = False) -> Query:
    return panel("shadow.agreement", v, raw, rq.shadow_agreement, lambda j: f"""
SELECT toStartOfInterval(ts, toIntervalSecond({{bucket:UInt32}})) AS t, count() AS pairs,
       avg(p_label = s_label) AS agreement, avg(abs(p_value - s_value)) AS mean_abs_diff,
       avg(s_ms - p_ms) AS latency_delta_ms,
       avg(s_status != 'ok') - avg(p_status != 'ok') AS error_rate_delta
{j} GROUP BY t ORDER BY t""", _pairs)


def shadow_confusion(v: View, raw: bool = False) -> Query:
    return panel("shadow.divergence", v, raw, rq.shadow_confusion, lambda j: f"""
SELECT ifNull(p_label, '(none)') AS primary_label, ifNull(s_label, '(none)') AS shadow_label,
       count() AS n
{j} GROUP BY primary_label, shadow_label ORDER BY n DESC LIMIT 400""", _pairs)


def variant_metrics(v: View, raw: bool = False) -> Query:
    return panel("ab.variants", v, raw, rq.variant_metrics, lambda w: f"""
SELECT variant, count() AS predictions, countIf(status != 'ok') / count() AS error_rate,
       quantileTDigest(0.5)(latency_ms) AS p50_ms, quantileTDigest(0.95)(latency_ms) AS p95_ms,
       avgIf({CONF}, notEmpty(prediction_scores)) AS mean_confidence,
       avgIf(prediction_num, prediction_label IS NULL) AS mean_prediction
FROM {P} WHERE {w} GROUP BY variant ORDER BY predictions DESC""")


def variant_accuracy(v: View, raw: bool = False) -> Query:
    """Accuracy of each served arm on labelled predictions (labels name the served prediction)."""
    return panel("ab.accuracy", v, raw, rq.variant_accuracy, lambda j: f"""
SELECT pr.variant AS variant, countIf({LABELLED}) AS labelled,
       avgIf(pr.prediction_label = lb.label_str, {LABELLED} AND lb.label_str IS NOT NULL) AS accuracy
{j} GROUP BY variant ORDER BY variant""", _variant_labels_join)


def outcome_stats(v: View, raw: bool = False) -> Query:
    """Per outcome and variant: n, mean and variance (the test itself is computed from these)."""
    return panel("ab.outcomes", v, raw, rq.outcome_stats, lambda w: f"""
SELECT o.name AS outcome, pr.variant AS variant, count() AS n, avg(o.value) AS mean,
       varSamp(o.value) AS var
FROM (SELECT prediction_id, name, value FROM driftline.{OUTCOME.table}
      WHERE model = {{model:String}} AND timestamp >= toDateTime64({{start:String}}, 6, 'UTC')
        AND prediction_id IS NOT NULL) AS o
INNER JOIN (SELECT event_id, variant FROM {P} WHERE {w} AND {NOT_SHADOW}) AS pr
        ON pr.event_id = assumeNotNull(o.prediction_id)
GROUP BY outcome, variant ORDER BY outcome, variant""")


# -- alerts ------------------------------------------------------------------------------------
def alert_history(start: Any, end: Any, model: str = "") -> Query:
    return query("alerts.history", """
SELECT event_time, event, severity, rule, model, model_version, segment, condition, value,
       since, samples, incident, dashboard_link, evidence_sql, features
FROM driftline.alerts FINAL
WHERE event_time >= toDateTime64({start:String}, 3, 'UTC')
  AND event_time < toDateTime64({end:String}, 3, 'UTC')
  AND ({model:String} = '' OR model = {model:String})
ORDER BY event_time DESC LIMIT 1000""", {**in_range(start, end), "model": model})
