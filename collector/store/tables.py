"""Every ClickHouse table and view of driftline, and the one :func:`migrate` that creates them.

Everything lives in database ``driftline``: the prediction log (one table per event kind, named by
``EventKind.table`` of :mod:`driftline.sdk.contract`), the label join view, detector output and
state, references, alert history, the deletion audit, and the dashboard's rollups
(``collector/store/rollups.py``). The statements are idempotent (``IF NOT EXISTS``) and additive
migrations are ``ADD COLUMN IF NOT EXISTS``, so every component that writes (collector,
``driftline up``, alerting, ``driftline reference``, the dashboard's seeder) calls :func:`migrate`
at start against the embedded store or a real server alike, and works when started alone on an
empty store. The dashboard cannot: it connects read-only.

Deduplication: a replayed event (same ``event_id``, same timestamp) has the same sorting key,
so ReplacingMergeTree collapses it on merge; the collector also filters replays before insert
(see ``collector/store/writer.py``) so that plain queries without ``FINAL`` count each event once.
"""

from __future__ import annotations

from typing import Any

from driftline.sdk.contract import LABEL, OUTCOME, PREDICTION

DATABASE = "driftline"

PREDICTIONS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.{PREDICTION.table}
(
    event_id          UUID,
    timestamp         DateTime64(6, 'UTC'),
    model             LowCardinality(String),
    model_version     LowCardinality(String),
    variant           LowCardinality(String),
    request_id        String,
    features_num      Map(LowCardinality(String), Float64),
    features_str      Map(LowCardinality(String), String),
    features_bool     Map(LowCardinality(String), Bool),
    features_null     Array(LowCardinality(String)),
    prediction        String COMMENT 'the prediction as JSON, exactly as logged (after scrubbing)',
    prediction_num    Nullable(Float64) COMMENT 'numeric prediction (regression, score)',
    prediction_label  Nullable(String) COMMENT 'class label, or the top class of a score mapping',
    prediction_scores Map(LowCardinality(String), Float64),
    latency_ms        Nullable(Float64),
    status            LowCardinality(String),
    error             String,
    tags              Map(LowCardinality(String), String),
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (model, model_version, timestamp, event_id)
"""

LABELS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.{LABEL.table}
(
    event_id       UUID,
    timestamp      DateTime64(6, 'UTC'),
    model          LowCardinality(String),
    model_version  LowCardinality(String),
    prediction_id  UUID,
    label          String COMMENT 'the label as JSON',
    label_num      Nullable(Float64),
    label_str      Nullable(String),
    tags           Map(LowCardinality(String), String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (model, prediction_id, timestamp, event_id)
"""

OUTCOMES = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.{OUTCOME.table}
(
    event_id       UUID,
    timestamp      DateTime64(6, 'UTC'),
    model          LowCardinality(String),
    prediction_id  Nullable(UUID),
    request_id     String,
    name           LowCardinality(String),
    value          Float64,
    tags           Map(LowCardinality(String), String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (model, name, timestamp, event_id)
"""

# Latest label per prediction joined to the prediction it belongs to.
LABELED_PREDICTIONS = f"""
CREATE VIEW IF NOT EXISTS {DATABASE}.labeled_predictions AS
SELECT
    p.*,
    l.label            AS label,
    l.label_num        AS label_num,
    l.label_str        AS label_str,
    l.label_timestamp  AS label_timestamp
FROM {DATABASE}.{PREDICTION.table} AS p
INNER JOIN
(
    SELECT
        prediction_id,
        argMax(label, timestamp)     AS label,
        argMax(label_num, timestamp) AS label_num,
        argMax(label_str, timestamp) AS label_str,
        max(timestamp)               AS label_timestamp
    FROM {DATABASE}.{LABEL.table}
    GROUP BY prediction_id
) AS l ON l.prediction_id = p.event_id
"""

# -- detectors (detectors/sink.py, detectors/state.py, detectors/reference.py) ---------------------
# Output of every detector (detectors/, issue 4). One row per (detector, feature, segment,
# statistic, window). ``segment`` is '' for all traffic, else 'tag=value'.
DRIFT_METRICS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.drift_metrics
(
    model           LowCardinality(String),
    model_version   LowCardinality(String),
    detector        LowCardinality(String),
    feature         String,
    segment         String,
    window_start    DateTime64(3, 'UTC'),
    window_end      DateTime64(3, 'UTC'),
    statistic       LowCardinality(String),
    value           Float64,
    p_value         Nullable(Float64),
    threshold       Nullable(Float64),
    drift           Bool COMMENT 'the verdict of (detector, feature, segment, window), on each of its statistics',
    reference_size  UInt64,
    current_size    UInt64,
    details         String COMMENT 'JSON with detector-specific evidence',
    exceeded        Bool DEFAULT drift COMMENT 'this statistic crossed its own threshold',
    computed_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, detector, feature, segment, statistic, window_start)
"""

# Values of drift_metrics.statistic for rows that are not a test of a feature's distribution
# (the one home for them: detectors/base.py re-exports them, alerting and the dashboard read them).
#: a feature data drift does not judge, with the reason in ``details``
STAT_EXCLUDED = "excluded"
#: feature ``*``: the share of judged features with a drift verdict (the dataset verdict)
STAT_DRIFTED_SHARE = "drifted_share"
#: a drifted feature's impact score: its importance to the model times its drift magnitude
STAT_IMPACT = "impact"
#: feature ``*``: the false-alarm budget of the window (value: the probability of a false
#: verdict per model and window the thresholds were set for; details: the budget as stated)
STAT_ALARM_BUDGET = "alarm_budget"
#: detector ``reference``, feature ``*``: the model version has no usable reference, so its data
#: and prediction drift are not checked (value: its predictions in the window; details: source)
STAT_REFERENCE_MISSING = "reference_missing"
#: ``drift_metrics.detector`` of the STAT_REFERENCE_MISSING rows (no detector judged anything)
REFERENCE_NOTICE_DETECTOR = "reference"
#: detector MEMORY_NOTICE_DETECTOR, feature ``*``: pending joins of the model evicted since its last
#: window for room (the collector's memory budget or the model's ``max_pending``): their labels,
#: shadows or outcomes can no longer be joined (value: entries evicted; details: by kind)
STAT_JOINS_EVICTED = "joins_evicted"
#: ``drift_metrics.detector`` of the STAT_JOINS_EVICTED rows
MEMORY_NOTICE_DETECTOR = "memory"

# Performance estimated without labels (detectors/estimate_stream.py, issue 18): one row per
# (model, version, segment, metric, window), written at window close and rewritten as the
# window's labels arrive (ReplacingMergeTree by updated_at: read with FINAL). ``realised`` is the
# metric over the window's labelled rows (a sample of them beyond the estimator's row cap),
# ``labelled_share`` their share of the window's ``n`` predictions.
PERFORMANCE_ESTIMATES_TABLE = "performance_estimates"
PERFORMANCE_ESTIMATES = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.{PERFORMANCE_ESTIMATES_TABLE}
(
    model           LowCardinality(String),
    model_version   LowCardinality(String),
    segment         String,
    window_start    DateTime64(3, 'UTC'),
    window_end      DateTime64(3, 'UTC'),
    metric          LowCardinality(String),
    method          LowCardinality(String) COMMENT 'cbpe or dle',
    estimate        Nullable(Float64),
    lower           Nullable(Float64) COMMENT 'band at level',
    upper           Nullable(Float64),
    level           Float64,
    threshold       Nullable(Float64) COMMENT 'the configured floor (mae, rmse: ceiling), if any',
    verdict         Bool COMMENT 'the band at the false-alarm budget level is past the threshold',
    realised        Nullable(Float64) COMMENT 'over the labelled rows so far',
    labelled        UInt64,
    labelled_share  Float64,
    n               UInt64 COMMENT 'predictions in the window and segment',
    updated_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, segment, metric, window_start)
"""
#: drift_metrics statistic of the per-model estimation error (feature: the metric; value: mean
#: |estimate - realised| over the graded windows kept, current_size: how many)
STAT_ESTIMATION_ERROR = "estimation_error"

DETECTOR_STATE = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.detector_state
(
    model     LowCardinality(String) COMMENT '* for the whole engine',
    key       String,
    blob      String COMMENT 'the compressed JSON state (base64 where meta lacks "blob": "bytes")',
    saved_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(saved_at)
ORDER BY (model, key)
"""

# Stores made before ``drift`` meant the verdict: their rows' ``drift`` was the statistic's own
# crossing, which is what ``exceeded`` now says, so old rows read ``exceeded = drift``.
DRIFT_METRICS_EXCEEDED = (f"ALTER TABLE {DATABASE}.drift_metrics ADD COLUMN IF NOT EXISTS exceeded Bool "
                          "DEFAULT drift COMMENT 'this statistic crossed its own threshold' AFTER details")

# Per-model records of detector state (full snapshots and deltas, see detectors/state.py;
# written by the collector's detector stage): what the record is, its sequence number and the Kafka positions
# observed, readable without decoding the blob.
DETECTOR_STATE_META = (f"ALTER TABLE {DATABASE}.detector_state ADD COLUMN IF NOT EXISTS meta String DEFAULT '' "
                       "COMMENT 'JSON: seq, base, kind, positions (per-model records)'")

REFERENCES = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.references
(
    model          LowCardinality(String),
    model_version  LowCardinality(String),
    created_at     DateTime64(3, 'UTC'),
    source         String,
    n_rows         UInt64,
    profile        String COMMENT 'JSON: bins and counts per feature',
    is_deleted     UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(created_at, is_deleted)
ORDER BY (model, model_version)
"""

# -- alerting (alerting/store.py): one row per incident event ----------------------------------
ALERTS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.alerts
(
    event_id        String COMMENT 'idempotency key of this event',
    event_time      DateTime64(3, 'UTC'),
    event           LowCardinality(String) COMMENT 'firing, repeat or resolved',
    incident        String COMMENT 'stable incident key (PagerDuty dedup_key)',
    rule            LowCardinality(String),
    kind            LowCardinality(String),
    severity        LowCardinality(String),
    model           LowCardinality(String),
    model_version   LowCardinality(String),
    segment         String,
    statistic       LowCardinality(String),
    condition       String,
    since           DateTime64(3, 'UTC') COMMENT 'start of the first breaching window',
    value           Nullable(Float64),
    samples         UInt64,
    features        String COMMENT 'JSON: drifted features with their statistics',
    windows         String COMMENT 'JSON: recent windows and their verdicts',
    evidence_sql    String COMMENT 'SQL that reproduces the evidence',
    dashboard_link  String,
    channels        Array(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (model, incident, event_id)
"""

# -- deletion on request (collector/store/deletion.py): the audit trail -------------------------
DELETIONS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.deletions
(
    deletion_id   UUID,
    requested_at  DateTime64(3, 'UTC'),
    requested_by  String,
    predicate     String,
    table_name    LowCardinality(String),
    rows_deleted  UInt64
)
ENGINE = MergeTree
ORDER BY (requested_at, deletion_id)
"""

# In dependency order: the database, the event tables, the view over them, the rest; the rollups
# (which read the event tables) follow in :func:`migrate`.
STATEMENTS: tuple[str, ...] = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    PREDICTIONS,
    LABELS,
    OUTCOMES,
    LABELED_PREDICTIONS,
    DRIFT_METRICS,
    DRIFT_METRICS_EXCEEDED,
    DETECTOR_STATE,
    DETECTOR_STATE_META,
    REFERENCES,
    PERFORMANCE_ESTIMATES,
    ALERTS,
    DELETIONS,
)


def migrate(client: Any) -> None:
    """Create the database and every table and view every component needs, if missing.

    ``client`` is a read-write clickhouse-connect client. Idempotent: every component that writes
    calls it at start. Then the dashboard's rollups (materialized views, ``rollups.py``), which
    fill themselves on every insert and are backfilled once when first created.
    """
    from driftline.collector.store import rollups

    for statement in STATEMENTS:
        client.command(statement)
    rollups.ensure(client)


__all__ = ["ALERTS", "DATABASE", "DELETIONS", "DETECTOR_STATE", "DETECTOR_STATE_META", "DRIFT_METRICS",
           "DRIFT_METRICS_EXCEEDED", "LABELED_PREDICTIONS", "LABELS", "OUTCOMES", "PREDICTIONS", "REFERENCES",
           "PERFORMANCE_ESTIMATES", "PERFORMANCE_ESTIMATES_TABLE", "STAT_ESTIMATION_ERROR",
           "STAT_ALARM_BUDGET", "STAT_DRIFTED_SHARE", "STAT_EXCLUDED", "STAT_IMPACT", "STAT_REFERENCE_MISSING",
           "REFERENCE_NOTICE_DETECTOR", "STATEMENTS", "migrate"]
