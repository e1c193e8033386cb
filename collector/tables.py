"""ClickHouse tables of the prediction log, created or migrated at start.

Everything lives in database ``driftline``. The statements are idempotent (``IF NOT EXISTS``)
and additive migrations are ``ADD COLUMN IF NOT EXISTS``, so every component may call
:func:`migrate` at start against the embedded store or a real server alike.

Deduplication: a replayed event (same ``event_id``, same timestamp) has the same sorting key,
so ReplacingMergeTree collapses it on merge; the collector also filters replays before insert
(see ``collector/writer.py``) so that plain queries without ``FINAL`` count each event once.
"""

from __future__ import annotations

from typing import Any

DATABASE = "driftline"

PREDICTIONS = f"""
CREATE TABLE IF NOT EXISTS {DATABASE}.predictions
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
CREATE TABLE IF NOT EXISTS {DATABASE}.labels
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
CREATE TABLE IF NOT EXISTS {DATABASE}.outcomes
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
FROM {DATABASE}.predictions AS p
INNER JOIN
(
    SELECT
        prediction_id,
        argMax(label, timestamp)     AS label,
        argMax(label_num, timestamp) AS label_num,
        argMax(label_str, timestamp) AS label_str,
        max(timestamp)               AS label_timestamp
    FROM {DATABASE}.labels
    GROUP BY prediction_id
) AS l ON l.prediction_id = p.event_id
"""

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
    drift           Bool,
    reference_size  UInt64,
    current_size    UInt64,
    details         String COMMENT 'JSON with detector-specific evidence',
    computed_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, model_version, detector, feature, segment, statistic, window_start)
"""

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

STATEMENTS: tuple[str, ...] = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    PREDICTIONS,
    LABELS,
    OUTCOMES,
    LABELED_PREDICTIONS,
    DRIFT_METRICS,
    DELETIONS,
)

TABLES = ("predictions", "labels", "outcomes", "drift_metrics", "deletions")


def migrate(client: Any) -> None:
    """Create the database and every table if missing. ``client`` is a clickhouse-connect client.

    Also the dashboard's rollups (materialized views; ``collector/rollups.py``), which fill
    themselves on every insert and are backfilled once when first created.
    """
    from driftline.collector import rollups

    for statement in STATEMENTS:
        client.command(statement)
    rollups.migrate(client)
