"""SQL: a read-only console over the prediction log.

Read-only, the row limit and the execution-time limit are ClickHouse settings sent with the
query (``readonly``, ``max_result_rows`` + ``result_overflow_mode='break'``,
``max_execution_time``), so ClickHouse enforces them and refuses writes with its own message.
"""

from __future__ import annotations

import streamlit as st

from driftline.dashboard.data import DataError, run
from driftline.dashboard.ui import Ctx

EXAMPLES: dict[str, str] = {
    "Traffic per model and version (last 24 h)": """SELECT model, model_version, count() AS predictions,
       quantile(0.95)(latency_ms) AS p95_ms, countIf(status != 'ok') / count() AS error_rate
FROM driftline.predictions
WHERE timestamp >= now() - INTERVAL 1 DAY
GROUP BY model, model_version ORDER BY predictions DESC""",
    "Hourly mean of a feature": """SELECT toStartOfHour(timestamp) AS hour, model,
       avg(features_num['mean radius']) AS mean_radius, count() AS n
FROM driftline.predictions
WHERE mapContains(features_num, 'mean radius')
GROUP BY hour, model ORDER BY hour DESC LIMIT 48""",
    "Accuracy by region (labelled predictions)": """SELECT model, tags['region'] AS region, count() AS labelled,
       avg(prediction_label = label_str) AS accuracy
FROM driftline.labeled_predictions
GROUP BY model, region ORDER BY model, region""",
    "Latest drifting features": """SELECT model, model_version, detector, feature, segment, statistic, value, threshold,
       exceeded, window_start
FROM driftline.drift_metrics
WHERE drift AND window_start >= now() - INTERVAL 1 DAY
ORDER BY window_start DESC LIMIT 100""",
    "Recent errors": """SELECT timestamp, model, model_version, variant, error, latency_ms
FROM driftline.predictions WHERE status != 'ok'
ORDER BY timestamp DESC LIMIT 100""",
    "Tables and sizes": """SELECT table, sum(rows) AS rows, formatReadableSize(sum(bytes_on_disk)) AS size
FROM system.parts WHERE database = 'driftline' AND active GROUP BY table ORDER BY table""",
}


def limits(max_rows: int, max_time_s: int) -> dict[str, object]:
    """The ClickHouse settings that bound one console query."""
    # 'break' returns what was read so far instead of failing; ClickHouse stops at block
    # granularity, so max_block_size keeps the overshoot small and the page trims the rest.
    return {"max_result_rows": max_rows, "result_overflow_mode": "break",
            "max_block_size": min(65505, max(1, max_rows)), "max_execution_time": max_time_s}


def render(ctx: Ctx) -> None:
    s = ctx.settings
    st.title("SQL")
    st.caption(f"Read-only: ClickHouse refuses writes. At most {s.sql_max_rows:,} rows and "
               f"{s.sql_max_execution_time_s} s per query. Tables live in database `driftline`: "
               "predictions, labels, outcomes, labeled_predictions, drift_metrics, alerts, references.")
    example = st.selectbox("Example queries", ["(choose an example)", *EXAMPLES], key="sql_example")
    if example in EXAMPLES and st.session_state.get("sql_loaded") != example:
        st.session_state["sql_text"] = EXAMPLES[example]
        st.session_state["sql_loaded"] = example
    st.session_state.setdefault("sql_text", next(iter(EXAMPLES.values())))
    sql = st.text_area("Query", key="sql_text", height=180)
    if st.button("Run", type="primary", key="sql_run"):
        try:
            st.session_state["sql_result"] = run(ctx.url, sql, settings=limits(
                s.sql_max_rows, s.sql_max_execution_time_s))
            st.session_state.pop("sql_error", None)
        except DataError as exc:
            st.session_state["sql_error"] = exc.message
            st.session_state.pop("sql_result", None)
    if "sql_error" in st.session_state:
        st.error(f"ClickHouse refused the query: {st.session_state['sql_error']}")
        return
    result = st.session_state.get("sql_result")
    if result is None:
        return
    df = result.df()
    truncated = len(df) >= s.sql_max_rows
    df = df.head(s.sql_max_rows)
    st.caption(f"{len(df):,} rows in {result.elapsed_s * 1000:.0f} ms"
               + (f" · truncated at the {s.sql_max_rows:,}-row limit" if truncated else ""))
    shown = df.copy()
    for col in shown.columns:  # maps, arrays and UUIDs display and export as text
        if shown[col].dtype == object:
            shown[col] = shown[col].map(lambda x: x if isinstance(x, (str, int, float, type(None))) else str(x))
    st.dataframe(shown, hide_index=True, width="stretch")
    st.download_button("Download CSV", shown.to_csv(index=False).encode(), "driftline-query.csv",
                       "text/csv", key="sql_csv")
