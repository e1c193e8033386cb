"""The rollups' SQL: their tables, the materialized views' queries and the backfills.

Only SQL text, no I/O: :mod:`driftline.collector.store.rollups` creates, rebuilds and drops what
is defined here, and the dashboard (``dashboard/rollup_queries.py``) runs the same per-minute
SELECTs over raw rows for the partial minutes at the edges of a time range, so a panel gives the
same answer from the rollups as from the raw tables. What each table holds is described in
``rollups.py``.

Inside a ClickHouse MV every reference to the source table reads the inserted block, while the
source table's rows are already visible through another name; the join MVs therefore read the
full ``labels`` table through the plain view ``rollup_labels_all`` (:data:`LABELS_ALL_VIEW`) and
exclude the block's own ``event_id`` values when they look for an earlier label or an earlier half
of a pair.
"""

from __future__ import annotations

from driftline.collector.store.free_text import TEXT_RULE
from driftline.collector.store.tables import DATABASE as DB
from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION
from driftline.sdk.contract.variants import PRIMARY, ROW_TAG, SHADOW

_P, _L, _O = (f"{DB}.{kind.table}" for kind in (PREDICTION, LABEL, OUTCOME))
CONF = "arrayMax(mapValues(prediction_scores))"
MINUTE = "toDateTime(toStartOfMinute(timestamp), 'UTC')"
# Roles by variant name (sdk/contract/variants.py): shadow, shadow:NAME and older shadow2... are shadows.
_SHADOW = f"variant LIKE '{SHADOW}%'"
SERVED = f"NOT {_SHADOW}"
_PRIMARY = f"variant = '{PRIMARY}'"
PAIRED = f"({_PRIMARY} OR {_SHADOW})"
DECILES = "0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9"
_NUM_OK = "isNull(prediction_label) AND isNotNull(prediction_num)"

# -- per-minute SELECTs: used by the MVs (src = the inserted block), the backfill, and the
# dashboard for the partial minutes at the edges of a time range (src = the raw table).
PREDICTIONS_SELECT = f"""
SELECT model, model_version, variant, {MINUTE} AS minute,
       isNotNull(prediction_label) AS has_label, ifNull(prediction_label, '') AS prediction_label,
       count() AS n, countIf(status != 'ok') AS errors,
       min(timestamp) AS first_ts, max(timestamp) AS last_ts,
       quantilesTDigestIfState(0.5, 0.95, 0.99)(ifNull(latency_ms, 0), isNotNull(latency_ms)) AS latency_q,
       countIf(notEmpty(prediction_scores)) AS conf_n,
       sumIf({CONF}, notEmpty(prediction_scores)) AS conf_sum,
       quantilesTDigestIfState(0.1, 0.5)({CONF}, notEmpty(prediction_scores)) AS conf_q,
       countIf({_NUM_OK}) AS num_n, sumIf(ifNull(prediction_num, 0), {_NUM_OK}) AS num_sum,
       quantilesTDigestIfState(0.1, 0.5, 0.9)(ifNull(prediction_num, 0), {_NUM_OK}) AS num_q
FROM {{src}} WHERE {{where}}
GROUP BY model, model_version, variant, minute, has_label, prediction_label"""

# Input features, per hour. Numeric values are first grouped in fine bins (a float's sign, exponent and
# top FINE_MANTISSA_BITS mantissa bits: 16 per doubling, each under 6.25 % of a value wide; equal
# values share one and are never split). When the hour is rolled (feature_rolls.py), its fine bins,
# in value order, are merged into equi-depth bins per (model, version, hour, feature): at most
# FEATURE_BINS, and at most one per BIN_VALUES values, bin i holding the fine bins with
# i/bins <= (values before them)/(all values) < (i+1)/bins, with the count, sum, min and max of their
# values. Rows per (model, feature, hour) are therefore bounded
# whatever the values (a model of few values per hour no longer gets about a row per value), and a
# reference edge cuts at most one bin per hour: histograms over any edges and deciles come from these
# rows (dashboard/rollup_queries.py). Strings and bools: one row per (feature, category); free text
# excluded (free_text.py keeps its lengths and entity counts from the raw log instead).
FEATURE_BINS = 32
BIN_VALUES = 16
FINE_MANTISSA_BITS = 4
# (mapFilter: an arrayFilter over arrayZip here made chDB 26.9 silently skip other views of the
# table on inserts that follow a label insert)
_CATEGORIES = f"mapFilter((k, c) -> NOT {TEXT_RULE.sql('c')}, features_str)"
_GROUP = "model, model_version, hour, feature, kind"


def _fine_bins(mantissa_bits: int) -> str:
    # one row per (model, version, hour, feature, kind, category, fine bin) of the rows matching {where};
    # a fine bin: a float's sign, exponent and top mantissa_bits mantissa bits (the low bits dropped)
    shift = 64 - 1 - 11 - mantissa_bits
    return f"""SELECT model, model_version, toDateTime(toStartOfHour(timestamp), 'UTC') AS hour, f.1 AS feature,
                   f.2 AS kind, f.3 AS category, count() AS c, sum(f.4) AS fs, min(f.4) AS fl, max(f.4) AS fh
            FROM {{src}} ARRAY JOIN arrayConcat(
                arrayMap((k, x) -> (k, toUInt8(0), '', x), mapKeys(features_num), mapValues(features_num)),
                arrayMap((k, c) -> (k, toUInt8(1), c, 0.), mapKeys({_CATEGORIES}), mapValues({_CATEGORIES})),
                arrayMap((k, b) -> (k, toUInt8(1), toString(b), 0.), mapKeys(features_bool),
                         mapValues(features_bool))) AS f
            WHERE {SERVED} AND {{where}}
            GROUP BY {_GROUP}, category, bitShiftRight(reinterpretAsUInt64(f.4), {shift})"""


# (arrays, not window functions: a window over the fine bins cost the roll 2-4x more CPU)
FEATURES_SELECT = f"""
SELECT model, model_version, hour, feature, kind, toUInt16(t.1) AS bin, t.2 AS category, sum(t.3) AS n,
       sum(t.4) AS s, min(t.5) AS lo, max(t.6) AS hi
FROM (SELECT model, model_version, hour, feature, kind,
             arraySort(e -> (e.1, e.2), groupArray((category, fl, c, fs, fh))) AS g,
             arrayCumSum(arrayMap(e -> e.3, g)) AS cum, cum[-1] AS total,
             if(kind = 0, least({FEATURE_BINS}, intDiv(total + {BIN_VALUES - 1}, {BIN_VALUES})), 0) AS bins,
             arrayJoin(arrayMap((e, k) -> (intDiv((k - e.3) * bins, total), e.1, e.3, e.4, e.2, e.5), g, cum)) AS t
      FROM ({_fine_bins(FINE_MANTISSA_BITS)})
      GROUP BY {_GROUP})
GROUP BY {_GROUP}, bin, category"""
#: rows like FEATURES_SELECT's for reading raw rows (the dashboard: hours not rolled, or too small to
#: roll): one per fine bin of RAW_MANTISSA_BITS (256 per doubling, each under 0.4 % of a value wide), so
#: histograms of raw hours are exact but for values that close to an edge, and the rows stay bounded
RAW_MANTISSA_BITS = 8
FEATURES_RAW_SELECT = f"""
SELECT model, model_version, hour, feature, kind, toUInt16(0) AS bin, category, c AS n, fs AS s, fl AS lo, fh AS hi
FROM ({_fine_bins(RAW_MANTISSA_BITS)})"""
#: the values a served predictions row gives rollup_features_1h (FEATURES_SELECT's ARRAY JOIN, counted)
FEATURE_VALUES = f"length(features_num) + length({_CATEGORIES}) + length(features_bool)"

#: tables and views of earlier releases, dropped by :func:`ensure`
RETIRED_VIEWS = ("rollup_features_1h_mv", "rollup_features_1m_mv", "rollup_categories_1m_mv", "rollup_request_index_mv",
                 "rollup_shadow_index_mv", "rollup_primary_index_mv")
RETIRED_TABLES = ("rollup_features_1m", "rollup_categories_1m", "rollup_request_index",
                  "rollup_shadow_index", "rollup_primary_index", "rollup_arrivals_1m")

_REQ_INDEX = """(model LowCardinality(String), rid UInt64, event_id UUID, role UInt8,
    timestamp DateTime64(6, 'UTC'), model_version LowCardinality(String), label Nullable(String),
    value Nullable(Float64), ms Nullable(Float64), status LowCardinality(String),
    hour DateTime('UTC') MATERIALIZED toStartOfHour(timestamp))
ENGINE = ReplacingMergeTree ORDER BY (model, role, hour, rid, event_id)"""
#: the feature rollup and the record of its rolls (feature_rolls.py)
FEATURE_ROLLUP, FEATURE_ROLLS = "rollup_features_1h", "rollup_feature_rolls"
_COMMON = "model LowCardinality(String), model_version LowCardinality(String)"
_TS = "DateTime64(6, 'UTC')"

TABLES: dict[str, str] = {
    "rollup_predictions_1m": f"""({_COMMON}, variant LowCardinality(String), minute DateTime('UTC'),
    has_label UInt8, prediction_label String,
    n SimpleAggregateFunction(sum, UInt64), errors SimpleAggregateFunction(sum, UInt64),
    first_ts SimpleAggregateFunction(min, {_TS}), last_ts SimpleAggregateFunction(max, {_TS}),
    latency_q AggregateFunction(quantilesTDigestIf(0.5, 0.95, 0.99), Float64, UInt8),
    conf_n SimpleAggregateFunction(sum, UInt64), conf_sum SimpleAggregateFunction(sum, Float64),
    conf_q AggregateFunction(quantilesTDigestIf(0.1, 0.5), Float64, UInt8),
    num_n SimpleAggregateFunction(sum, UInt64), num_sum SimpleAggregateFunction(sum, Float64),
    num_q AggregateFunction(quantilesTDigestIf(0.1, 0.5, 0.9), Float64, UInt8))
ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(minute)
ORDER BY (model, minute, model_version, variant, has_label, prediction_label)""",
    # Filled by rolls (feature_rolls.py), not by a view: ``gen`` is the roll that wrote a row; only a
    # (model, hour)'s latest roll recorded in rollup_feature_rolls counts (ROLLED_FEATURES).
    FEATURE_ROLLUP: f"""({_COMMON}, hour DateTime('UTC'), feature LowCardinality(String),
    kind UInt8, bin UInt16, category String,
    n SimpleAggregateFunction(sum, UInt64), s SimpleAggregateFunction(sum, Float64),
    lo SimpleAggregateFunction(min, Float64), hi SimpleAggregateFunction(max, Float64), gen UInt64)
ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(hour)
ORDER BY (model, feature, hour, gen, model_version, kind, bin, category)""",
    # One row per roll of a (model, hour): its generation, the feature values it counted, and whether
    # it wrote no bins because the hour's feature values were too few (raw: read from the raw rows).
    FEATURE_ROLLS: """(model LowCardinality(String), hour DateTime('UTC'), gen UInt64, n UInt64,
    raw UInt8, rolled_at DateTime64(6, 'UTC'))
ENGINE = ReplacingMergeTree(gen) ORDER BY (model, hour)""",
    "rollup_prediction_index": f"""(model LowCardinality(String), event_id UUID, timestamp {_TS},
    model_version LowCardinality(String), variant LowCardinality(String),
    prediction_label Nullable(String), prediction_num Nullable(Float64))
ENGINE = ReplacingMergeTree ORDER BY (model, event_id)""",
    "rollup_labels_1m": f"""({_COMMON}, variant LowCardinality(String), minute DateTime('UTC'),
    actual_has UInt8, actual String, predicted_has UInt8, predicted String,
    labelled Int64, cmp_n Int64, correct Int64, num_n Int64, abs_sum Float64, sq_sum Float64,
    delay_ms Int64)
ENGINE = SummingMergeTree PARTITION BY toYYYYMM(minute)
ORDER BY (model, minute, model_version, variant, actual_has, actual, predicted_has, predicted)""",
    "rollup_pair_index": _REQ_INDEX,
    # Null tables: blocks handed from one MV to the next, nothing stored
    "rollup_early": f"""(model LowCardinality(String), event_id UUID, timestamp {_TS},
    model_version LowCardinality(String), variant LowCardinality(String),
    prediction_label Nullable(String), prediction_num Nullable(Float64)) ENGINE = Null""",
    "rollup_pair_block": f"""(model LowCardinality(String), rid UInt64, event_id UUID, role UInt8,
    timestamp {_TS}, model_version LowCardinality(String), label Nullable(String),
    value Nullable(Float64), ms Nullable(Float64), status LowCardinality(String)) ENGINE = Null""",
    "rollup_outcome_index": f"""(model LowCardinality(String), prediction_id UUID, event_id UUID,
    name LowCardinality(String), value Float64)
ENGINE = ReplacingMergeTree ORDER BY (model, prediction_id, event_id)""",
    "rollup_outcomes_1m": f"""({_COMMON}, variant LowCardinality(String), minute DateTime('UTC'),
    name LowCardinality(String), n Int64, s Float64, s2 Float64)
ENGINE = SummingMergeTree PARTITION BY toYYYYMM(minute)
ORDER BY (model, minute, model_version, variant, name)""",
    "rollup_shadow_1m": f"""(model LowCardinality(String), p_version LowCardinality(String),
    s_version LowCardinality(String), minute DateTime('UTC'), p_has UInt8, p_label String,
    s_has UInt8, s_label String, pairs Int64, cmp_n Int64, agree Int64, diff_n Int64,
    diff_sum Float64, lat_n Int64, lat_sum Float64, p_err Int64, s_err Int64)
ENGINE = SummingMergeTree PARTITION BY toYYYYMM(minute)
ORDER BY (model, minute, p_version, s_version, p_has, p_label, s_has, s_label)""",
}

# Labels and outcomes stored per (kind, hour): a view that writes for every insert into those
# tables (the predictions' is rollup_predictions_1m's), so that an insert which ran none of its
# table's views shows in its summary (SENTINEL_VIEWS). Per hour, not per model: a few rows per
# insert whatever the number of models (per model and minute it cost 1.14x the store's CPU per
# label at 1,000 models, bench_label_views.py); `driftline rollups check` compares it per hour.
TABLES["rollup_arrivals_1h"] = """(kind LowCardinality(String), hour DateTime('UTC'),
    n SimpleAggregateFunction(sum, UInt64))
ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (kind, hour)"""
HOUR = "toDateTime(toStartOfHour(timestamp), 'UTC')"
_ARRIVALS = {kind.table: (f"SELECT '{kind.table}' AS kind, {HOUR} AS hour, count() AS n "
                          f"FROM {DB}.{kind.table} GROUP BY hour") for kind in (LABEL, OUTCOME)}

# Hourly tier of rollup_predictions_1m (same columns; ``minute`` holds the hour), fed from it:
# a week's chart merges ~170 t-digest states per series instead of ~10,000.
TABLES = {"rollup_predictions_1m": TABLES["rollup_predictions_1m"],
          "rollup_predictions_1h": TABLES["rollup_predictions_1m"], **TABLES}
PREDICTIONS_1H_SELECT = f"""
SELECT model, model_version, variant, toStartOfHour(minute) AS minute, has_label, prediction_label,
       sum(n) AS n, sum(errors) AS errors, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
       quantilesTDigestIfMergeState(0.5, 0.95, 0.99)(latency_q) AS latency_q,
       sum(conf_n) AS conf_n, sum(conf_sum) AS conf_sum,
       quantilesTDigestIfMergeState(0.1, 0.5)(conf_q) AS conf_q,
       sum(num_n) AS num_n, sum(num_sum) AS num_sum,
       quantilesTDigestIfMergeState(0.1, 0.5, 0.9)(num_q) AS num_q
FROM {DB}.rollup_predictions_1m
GROUP BY model, model_version, variant, minute, has_label, prediction_label"""

# -- the label join ----------------------------------------------------------------------------
_LATEST = ("max(timestamp) AS ts, argMax(label_str, timestamp) AS ls, "
           "argMax(label_num, timestamp) AS ln")


def _contribution(sign: str, p: str, ts: str, ls: str, ln: str) -> str:
    """Columns of rollup_labels_1m for prediction alias ``p`` and label values, times ``sign``."""
    num_ok = f"({p}.prediction_label IS NULL AND {ln} IS NOT NULL AND {p}.prediction_num IS NOT NULL)"
    cmp_ok = f"({ls} IS NOT NULL AND {p}.prediction_label IS NOT NULL)"
    return f"""{p}.model AS model, {p}.model_version AS model_version, {p}.variant AS variant,
       toDateTime(toStartOfMinute({p}.timestamp), 'UTC') AS minute,
       isNotNull({ls}) AS actual_has, ifNull({ls}, '') AS actual,
       isNotNull({p}.prediction_label) AS predicted_has, ifNull({p}.prediction_label, '') AS predicted,
       toInt64({sign}) AS labelled, toInt64({sign} * {cmp_ok}) AS cmp_n,
       toInt64({sign} * ({cmp_ok} AND {ls} = {p}.prediction_label)) AS correct,
       toInt64({sign} * {num_ok}) AS num_n,
       {sign} * if({num_ok}, abs(assumeNotNull({p}.prediction_num) - assumeNotNull({ln})), 0) AS abs_sum,
       {sign} * if({num_ok}, pow(assumeNotNull({p}.prediction_num) - assumeNotNull({ln}), 2), 0) AS sq_sum,
       toInt64({sign} * dateDiff('millisecond', {p}.timestamp, {ts})) AS delay_ms"""


def _index_cols(p: str = "") -> str:
    return (f"{p}model AS model, {p}event_id AS event_id, {p}timestamp AS timestamp, "
            f"{p}model_version AS model_version, {p}variant AS variant, "
            f"{p}prediction_label AS prediction_label, {p}prediction_num AS prediction_num")


# A label block: drop replays (event ids already stored before this block), keep each
# prediction's latest label in the block, find the previous latest label outside the block,
# and emit +new (and -previous) when the block's label is the newest.
LABELS_MV_SELECT = f"""
SELECT {_contribution('c.1', 'p', 'c.2', 'c.3', 'c.4')}
FROM (
  SELECT nw.model AS model, nw.prediction_id AS pid, nw.ts AS nts, nw.ls AS nls, nw.ln AS nln,
         old.found AS found, old.ts AS ots, old.ls AS ols, old.ln AS oln
  FROM (SELECT model, prediction_id, {_LATEST} FROM {_L}
        WHERE event_id NOT IN (SELECT event_id FROM {DB}.rollup_labels_all
                               WHERE (model, prediction_id) IN (SELECT model, prediction_id FROM {_L})
                               GROUP BY event_id HAVING count() > 1)
        GROUP BY model, prediction_id) AS nw
  LEFT JOIN (SELECT model, prediction_id, {_LATEST}, toUInt8(1) AS found FROM {DB}.rollup_labels_all
             WHERE (model, prediction_id) IN (SELECT model, prediction_id FROM {_L})
               AND event_id NOT IN (SELECT event_id FROM {_L})
             GROUP BY model, prediction_id) AS old
    ON old.model = nw.model AND old.prediction_id = nw.prediction_id
  WHERE old.found = 0 OR nw.ts > old.ts) AS x
INNER JOIN (SELECT {_index_cols()} FROM {DB}.rollup_prediction_index
            WHERE (model, event_id) IN (SELECT model, prediction_id FROM {_L})
            LIMIT 1 BY model, event_id) AS p ON p.model = x.model AND p.event_id = x.pid
ARRAY JOIN arrayFilter(t -> t.1 != 0,
    [(toInt8(1), x.nts, x.nls, x.nln), (toInt8(-1 * x.found), x.ots, x.ols, x.oln)]) AS c"""

# Served predictions whose label is already stored (it arrived first): add them now. ``{src}`` is
# the raw table (the dashboard's edge minutes) or ``rollup_early`` (the MV, see EARLY_SELECT).
_PREDICTIONS_LABELS = f"""
SELECT {_contribution('1', 'p', 'l.ts', 'l.ls', 'l.ln')}
FROM (SELECT {_index_cols()} FROM {{src}} WHERE {SERVED} AND {{where}}) AS p
INNER JOIN (SELECT model, prediction_id, {_LATEST} FROM {_L}
            WHERE (model, prediction_id) IN (SELECT model, event_id FROM {{src}}
                                             WHERE {SERVED} AND {{where}})
            GROUP BY model, prediction_id) AS l
  ON l.model = p.model AND l.prediction_id = p.event_id"""
PREDICTIONS_LABELS_MV_SELECT = _PREDICTIONS_LABELS.replace("{src}", _P)

LABELS_BACKFILL = f"""
SELECT {_contribution('1', 'p', 'l.ts', 'l.ls', 'l.ln')}
FROM (SELECT {_index_cols()} FROM {DB}.rollup_prediction_index FINAL) AS p
INNER JOIN (SELECT model, prediction_id, {_LATEST} FROM {_L} GROUP BY model, prediction_id) AS l
  ON l.model = p.model AND l.prediction_id = p.event_id"""

# -- outcomes (every outcome counts; keyed by its served prediction's minute and variant) -------
_OUTCOME = """p.model AS model, p.model_version AS model_version, p.variant AS variant,
       toDateTime(toStartOfMinute(p.timestamp), 'UTC') AS minute, o.name AS name, toInt64(1) AS n,
       o.value AS s, o.value * o.value AS s2"""
_OUTCOME_INDEX = (f"SELECT model, assumeNotNull(prediction_id) AS prediction_id, event_id, name, value "
                  f"FROM {_O} WHERE prediction_id IS NOT NULL")

OUTCOMES_MV_SELECT = f"""
SELECT {_OUTCOME}
FROM (SELECT model, assumeNotNull(prediction_id) AS prediction_id, name, value FROM {_O}
      WHERE prediction_id IS NOT NULL) AS o
INNER JOIN (SELECT {_index_cols()} FROM {DB}.rollup_prediction_index
            WHERE (model, event_id) IN (SELECT model, assumeNotNull(prediction_id) FROM {_O}
                                        WHERE prediction_id IS NOT NULL)
            LIMIT 1 BY model, event_id) AS p ON p.model = o.model AND p.event_id = o.prediction_id"""

# Outcomes stored before their prediction (read through the outcome index, keyed by prediction).
_PREDICTIONS_OUTCOMES = f"""
SELECT {_OUTCOME}
FROM (SELECT {_index_cols()} FROM {{src}} WHERE {SERVED} AND {{where}}) AS p
INNER JOIN (SELECT model, prediction_id, name, value FROM {DB}.rollup_outcome_index
            WHERE (model, prediction_id) IN (SELECT model, event_id FROM {{src}}
                                             WHERE {SERVED} AND {{where}})
            LIMIT 1 BY model, prediction_id, event_id) AS o
  ON o.model = p.model AND o.prediction_id = p.event_id"""
PREDICTIONS_OUTCOMES_MV_SELECT = _PREDICTIONS_OUTCOMES.replace("{src}", _P)

# Each MV's query costs milliseconds to analyse and plan on every insert, whatever the block size,
# and labels or outcomes stored before their prediction are rare: one slim MV passes the block's
# served predictions that have one to the Null table ``rollup_early``, and the two join MVs above
# run on that table, i.e. only for inserts that have such predictions (a view on a Null table
# does not run for an empty block).
_BLOCK_IDS = f"(SELECT model, event_id FROM {_P})"
EARLY_SELECT = f"""
SELECT {_index_cols()} FROM {_P} WHERE {SERVED} AND (
  (model, event_id) IN (SELECT model, prediction_id FROM {_L} WHERE (model, prediction_id) IN {_BLOCK_IDS})
  OR (model, event_id) IN (SELECT model, prediction_id FROM {DB}.rollup_outcome_index
                           WHERE (model, prediction_id) IN {_BLOCK_IDS}))"""

OUTCOMES_BACKFILL = f"""
SELECT {_OUTCOME}
FROM (SELECT * FROM {DB}.rollup_outcome_index FINAL) AS o
INNER JOIN (SELECT {_index_cols()} FROM {DB}.rollup_prediction_index FINAL) AS p
  ON p.model = o.model AND p.event_id = o.prediction_id"""

# -- shadow pairs ------------------------------------------------------------------------------
# A pair is one row of one request: the row index tag is part of the hashed key (empty for a
# one-row request). Numeric class ids (a JSON integer prediction) compare as labels, so that
# agreement is counted for them too; float outputs compare by value only.
#: the key of a shadow pair (request and row), and the label a pair compares, over `predictions`
#: (the dashboard's raw pair panels use the same two expressions)
PAIR_KEY_SQL = f"cityHash64(request_id, tags['{ROW_TAG}'])"
PAIR_LABEL_SQL = ("coalesce(prediction_label, if(length(prediction) < 19 AND match(prediction, '^-?[0-9]+$'), "
                  "prediction, NULL))")
_RID = f"model, {PAIR_KEY_SQL}"
_REQ_COLS = (f"model, {PAIR_KEY_SQL} AS rid, event_id, "
             f"toUInt8(if({_SHADOW}, 2, 1)) AS role, timestamp, model_version, "
             f"{PAIR_LABEL_SQL} AS label, "
             f"coalesce(prediction_num, {CONF}) AS value, latency_ms AS ms, status")


def _pairs_select(rows: str, having: str) -> str:
    return f"""
SELECT model, anyIf(model_version, role = 1) AS p_version, anyIf(model_version, role = 2) AS s_version,
       toDateTime(toStartOfMinute(minIf(timestamp, role = 1)), 'UTC') AS minute,
       isNotNull(anyIf(label, role = 1)) AS p_has, ifNull(anyIf(label, role = 1), '') AS p_label,
       isNotNull(anyIf(label, role = 2)) AS s_has, ifNull(anyIf(label, role = 2), '') AS s_label,
       toInt64(1) AS pairs, toInt64(p_has AND s_has) AS cmp_n,
       toInt64(p_has AND s_has AND p_label = s_label) AS agree,
       toInt64(isNotNull(anyIf(value, role = 1)) AND isNotNull(anyIf(value, role = 2))) AS diff_n,
       ifNull(abs(anyIf(value, role = 1) - anyIf(value, role = 2)), 0) AS diff_sum,
       toInt64(isNotNull(anyIf(ms, role = 1)) AND isNotNull(anyIf(ms, role = 2))) AS lat_n,
       ifNull(anyIf(ms, role = 2) - anyIf(ms, role = 1), 0) AS lat_sum,
       toInt64(anyIf(status, role = 1) != 'ok') AS p_err, toInt64(anyIf(status, role = 2) != 'ok') AS s_err
FROM ({rows}) GROUP BY model, rid HAVING {having}"""


# Shadow pairing runs in two steps so that a block without shadows costs one slim MV: the first
# passes the block's pairing candidates (its shadows, and the primaries of requests with a shadow in
# the block or in the pair index) to the Null table ``rollup_pair_block``; the pairing MV runs on
# that table, so only for blocks that have candidates. The earlier half of a pair is looked up by
# primary key ((model, role, hour, rid) IN sets of the requests whose other half is not in the
# block, so few granules are read) among the block's hours +-1: halves logged more than an hour
# apart are not paired by the view. Rows of the block already visible in the index (its MV ran
# first) are excluded by event id. (A scalar subquery over the block, e.g.
# ``hour >= (SELECT min(...) FROM predictions)``, made chDB 26.9 skip every view of the table
# without an error: keep to IN sets.)
_PAIR_BLOCK = f"{DB}.rollup_pair_block"


def _hours(src: str) -> str:
    return (f"hour IN (SELECT DISTINCT arrayJoin([h - 3600, h, h + 3600]) FROM "
            f"(SELECT toDateTime(toStartOfHour(timestamp), 'UTC') AS h FROM {src}))")


_OLD_SHADOW_RIDS = (f"SELECT model, rid FROM {DB}.rollup_pair_index WHERE role = 2 AND {_hours(_P)} "
                    f"AND (model, rid) IN (SELECT {_RID} FROM {_P} WHERE {_PRIMARY} AND "
                    f"({_RID}) NOT IN (SELECT {_RID} FROM {_P} WHERE {_SHADOW}))")
PAIR_CANDIDATES_SELECT = f"""
SELECT {_REQ_COLS} FROM {_P} WHERE {_SHADOW} OR ({_PRIMARY} AND ({_RID}) IN (
    SELECT {_RID} FROM {_P} WHERE {_SHADOW} UNION ALL {_OLD_SHADOW_RIDS}))"""

SHADOW_MV_SELECT = _pairs_select(
    f"""SELECT *, toUInt8(0) AS old FROM {_PAIR_BLOCK}
        UNION ALL
        SELECT *, toUInt8(1) AS old FROM {DB}.rollup_pair_index WHERE {_hours(_PAIR_BLOCK)}
          AND (model, rid) IN (SELECT model, rid FROM {_PAIR_BLOCK} GROUP BY model, rid HAVING min(role) = max(role))
          AND event_id NOT IN (SELECT event_id FROM {_PAIR_BLOCK})""",
    "countIf(role = 1) > 0 AND countIf(role = 2) > 0 "
    "AND NOT (countIf(role = 1 AND old = 1) > 0 AND countIf(role = 2 AND old = 1) > 0)")

# Pairs among raw rows matching {rows}, counted when the primary matches {primary}.
SHADOW_RAW_SELECT = _pairs_select(
    f"SELECT {_REQ_COLS} FROM {_P} WHERE {PAIRED} AND {{rows}}",
    "countIf(role = 1) > 0 AND countIf(role = 2) > 0 AND countIf(role = 1 AND {primary}) > 0")

SHADOW_BACKFILL = _pairs_select(f"SELECT * FROM {DB}.rollup_pair_index FINAL",
                                 "countIf(role = 1) > 0 AND countIf(role = 2) > 0")

# name -> (target table, SELECT for the MV); the MVs are created in this order.
VIEWS: dict[str, tuple[str, str]] = {
    "rollup_predictions_1m_mv": ("rollup_predictions_1m",
                                 PREDICTIONS_SELECT.format(src=_P, where="1")),
    "rollup_predictions_1h_mv": ("rollup_predictions_1h", PREDICTIONS_1H_SELECT),
    "rollup_prediction_index_mv": ("rollup_prediction_index",
                                   f"SELECT {_index_cols()} FROM {_P} WHERE {SERVED}"),
    "rollup_early_mv": ("rollup_early", EARLY_SELECT),
    "rollup_labels_1m_from_predictions_mv": (
        "rollup_labels_1m", _PREDICTIONS_LABELS.replace("{src}", f"{DB}.rollup_early").format(where="1")),
    "rollup_labels_1m_from_labels_mv": ("rollup_labels_1m", LABELS_MV_SELECT),
    "rollup_outcome_index_mv": ("rollup_outcome_index", _OUTCOME_INDEX),
    "rollup_outcomes_1m_from_predictions_mv": (
        "rollup_outcomes_1m", _PREDICTIONS_OUTCOMES.replace("{src}", f"{DB}.rollup_early").format(where="1")),
    "rollup_outcomes_1m_from_outcomes_mv": ("rollup_outcomes_1m", OUTCOMES_MV_SELECT),
    "rollup_pair_index_mv": ("rollup_pair_index", f"SELECT {_REQ_COLS} FROM {_P} WHERE {PAIRED}"),
    "rollup_pair_block_mv": ("rollup_pair_block", PAIR_CANDIDATES_SELECT),
    "rollup_shadow_1m_mv": ("rollup_shadow_1m", SHADOW_MV_SELECT),
    **{f"rollup_{table}_arrivals_mv": ("rollup_arrivals_1h", select) for table, select in _ARRIVALS.items()},
}

#: per raw table, a view above that writes at least one row for every non-empty insert into it (no
#: WHERE, a GROUP BY): an insert whose summary counts only the table's own rows ran none of its
#: views, which the writer checks (chDB 26.9 was seen to skip every view of one insert, silently)
SENTINEL_VIEWS: dict[str, str] = {PREDICTION.table: "rollup_predictions_1m_mv",
                                  **{table: f"rollup_{table}_arrivals_mv" for table in _ARRIVALS}}

# Backfill of a newly created table, in dependency order (indexes before the joins).
BACKFILL: dict[str, str] = {
    "rollup_predictions_1m": PREDICTIONS_SELECT.format(src=_P, where="1"),
    "rollup_predictions_1h": PREDICTIONS_1H_SELECT,
    "rollup_prediction_index": f"SELECT {_index_cols()} FROM {_P} WHERE {SERVED}",
    "rollup_labels_1m": LABELS_BACKFILL,
    "rollup_outcome_index": _OUTCOME_INDEX,
    "rollup_outcomes_1m": OUTCOMES_BACKFILL,
    "rollup_pair_index": f"SELECT {_REQ_COLS} FROM {_P} WHERE {PAIRED}",
    "rollup_shadow_1m": SHADOW_BACKFILL,
    "rollup_arrivals_1h": " UNION ALL ".join(_ARRIVALS.values()),
}

LABELS_ALL_VIEW = f"CREATE VIEW IF NOT EXISTS {DB}.rollup_labels_all AS SELECT * FROM {_L}"

#: tables rebuilt from the raw rows when their definition (DDL or SELECT) changes: their comment
#: holds a hash of it (``rollups.ensure``); the others keep rows of older definitions
REBUILT_ON_CHANGE = (FEATURE_ROLLUP, FEATURE_ROLLS)

# -- the feature rollup's rolls (feature_rolls.py): an hour's rows computed from the raw rows once
# it is closed, and again when its raw rows change; each roll is a generation, and only the latest
# recorded generation of a (model, hour) counts
ROLLS = f"{DB}.{FEATURE_ROLLS}"
#: served feature values per (model, hour) in the raw log, rows matching {where}
RAW_FEATURE_VALUES = (f"SELECT model, {HOUR} AS hour, sum({FEATURE_VALUES}) AS n FROM {_P} "
                      f"WHERE {SERVED} AND {{where}} GROUP BY model, hour")


#: a (model, hour) whose served predictions hold fewer feature values (e.g. 500 predictions of 20
#: features) is not rolled: its roll is recorded as ``raw`` with no rows, and the dashboard reads its
#: raw rows, which are exact and, that few, as cheap to read as bins (a fleet of small models: no roll
#: to pay for; bins of so few values would only blur them). Counted in values, not predictions, so
#: that a wide model's hour (1,000 features) is binned: its raw rows would be slow to read.
ROLL_MIN_VALUES = 10_000


def latest_rolls(where: str = "1") -> str:
    """The latest roll of each (model, hour) whose records match ``where``: ``model, hour, gen, n, raw``."""
    return (f"SELECT model, hour, max(r.gen) AS gen, argMax(r.n, r.gen) AS n, argMax(r.raw, r.gen) AS raw "
            f"FROM {ROLLS} AS r WHERE {where} GROUP BY model, hour")


def rolled_rows(where: str = "1") -> str:
    """A condition on ``rollup_features_1h``: the row belongs to its (model, hour)'s latest roll
    (``where`` narrows the rolls read, on ``model`` and ``hour``)."""
    return f"(model, hour, gen) IN (SELECT model, hour, gen FROM ({latest_rolls(where)}))"


def raw_hours(where: str) -> str:
    """The hours whose latest roll among those matching ``where`` is ``raw`` (read from the raw rows)."""
    return f"(SELECT hour FROM ({latest_rolls(where)}) WHERE raw = 1)"


def rolled_until(where: str) -> str:
    """A scalar: the end of the last hour rolled among the rolls matching ``where`` (1970 if none)."""
    return f"(SELECT toDateTime64(max(hour), 6, 'UTC') + toIntervalHour(1) FROM {ROLLS} WHERE {where})"


def _small(where: str, min_values: int) -> str:
    # the maps' sizes (only their offsets are read), free text included: an upper bound of the values
    values = "length(features_num) + length(features_str) + length(features_bool)"
    return (f"(SELECT model FROM {_P} WHERE {SERVED} AND {where} GROUP BY model "
            f"HAVING sum({values}) < {int(min_values)})")


def roll_insert(where: str, gen: int, min_values: int = ROLL_MIN_VALUES) -> str:
    """Roll the served predictions matching ``where`` (one hour's) into ``rollup_features_1h`` as
    generation ``gen``, but for the models whose rows hold fewer than ``min_values`` feature values."""
    src = FEATURES_SELECT.format(src=_P, where=f"{where} AND model NOT IN {_small(where, min_values)}")
    return (f"INSERT INTO {DB}.rollup_features_1h (model, model_version, hour, feature, kind, bin, category, n, s, "
            f"lo, hi, gen) SELECT *, toUInt64({int(gen)}) FROM ({src})")


def roll_record(where: str, gen: int, raw_where: str, min_values: int = ROLL_MIN_VALUES) -> str:
    """Record generation ``gen`` as the latest roll of every (model, hour) matching ``where`` that it
    wrote rows for, that had a roll before (which it emptied: their rows were deleted), or whose
    served predictions matching ``raw_where`` (the same hour's) hold fewer than ``min_values`` feature
    values (``raw``: their values counted from the raw rows)."""
    small = RAW_FEATURE_VALUES.format(where=f"{raw_where} AND model IN {_small(raw_where, min_values)}")
    return (f"INSERT INTO {ROLLS} (model, hour, gen, n, raw, rolled_at) SELECT model, hour, toUInt64({int(gen)}), "
            f"sum(n), max(raw), now64(6) FROM (SELECT model, hour, toUInt64(n) AS n, toUInt8(0) AS raw "
            f"FROM {DB}.rollup_features_1h WHERE {where} AND gen = {int(gen)} "
            f"UNION ALL SELECT model, hour, toUInt64(n) AS n, toUInt8(1) AS raw FROM ({small}) "
            f"UNION ALL SELECT model, hour, toUInt64(0) AS n, toUInt8(0) AS raw FROM {ROLLS} WHERE {where}) "
            f"GROUP BY model, hour")


#: tables holding one row per event (a deletion of events must delete from these too)
PER_EVENT_TABLES = ("rollup_prediction_index", "rollup_pair_index", "rollup_outcome_index")


__all__ = ["BACKFILL", "BIN_VALUES", "DB", "FEATURES_RAW_SELECT", "FEATURES_SELECT", "FEATURE_BINS", "FEATURE_ROLLS",
           "FEATURE_ROLLUP", "FEATURE_VALUES", "FINE_MANTISSA_BITS", "HOUR", "LABELS_ALL_VIEW", "PAIR_KEY_SQL",
           "PAIR_LABEL_SQL", "PER_EVENT_TABLES",
           "PREDICTIONS_LABELS_MV_SELECT", "PREDICTIONS_OUTCOMES_MV_SELECT", "PREDICTIONS_SELECT", "RAW_FEATURE_VALUES",
           "RAW_MANTISSA_BITS", "REBUILT_ON_CHANGE", "RETIRED_TABLES", "RETIRED_VIEWS", "ROLLS", "ROLL_MIN_VALUES",
           "SENTINEL_VIEWS", "SHADOW_RAW_SELECT", "TABLES", "VIEWS", "latest_rolls", "raw_hours", "roll_insert",
           "roll_record", "rolled_rows", "rolled_until"]
