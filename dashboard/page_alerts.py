"""Alerts: history and status, each linking to the model page at the alert's time."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from driftline.dashboard import queries
from driftline.dashboard.ui import Ctx, data, empty, fig_defaults, plot, utc
from driftline.dashboard.view import link

SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}


def render(ctx: Ctx) -> None:
    import plotly.express as px

    v = ctx.view
    st.title("Alerts")
    only = st.selectbox("Model", ["(all models)", *ctx.models], key="alerts_model")
    model = "" if only == "(all models)" else only
    hist = data(ctx, queries.alert_history(v.start, v.end, model), quiet_missing=True)
    opened = data(ctx, queries.open_alerts(), quiet_missing=True)
    if hist is None:
        empty("No alert history table yet.",
              "run the alerting service with rules (`driftline up --alert-rules rules.yaml` or "
              "`driftline alerts run --rules rules.yaml`); fired and resolved alerts land in "
              "`driftline.alerts`.")
        return
    if opened is not None and model:
        opened = opened[opened.model == model]
    c = st.columns(3)
    c[0].metric("Open incidents", 0 if opened is None else len(opened))
    c[1].metric("Alert events in range", len(hist))
    c[2].metric("Critical events in range", int((hist.severity == "critical").sum()) if len(hist) else 0)
    if not len(hist):
        empty("No alert fired in this time range.", "widen the time range in the sidebar.")
        return
    utc(hist, "event_time", "since")
    status = {} if opened is None else {i: "open" for i in opened.incident}
    # Each row links to the model page from an hour before the breach started to an hour after
    # this event: the evidence window an on-call person wants first.
    pad = dt.timedelta(hours=1)
    hist["status"] = [status.get(i, "resolved") for i in hist.incident]
    hist["open"] = [link("model", r.model, r.model_version, r.segment, r.since.to_pydatetime() - pad,
                         r.event_time.to_pydatetime() + pad) for r in hist.itertuples()]
    fig = px.scatter(hist, x="event_time", y="rule", color="severity", symbol="event",
                     color_discrete_map=SEVERITY_COLORS, hover_data=["model", "segment", "condition", "value"])
    plot(fig_defaults(fig, "Alert events", height=260))
    st.dataframe(hist[["event_time", "status", "event", "severity", "rule", "model", "model_version",
                       "segment", "condition", "value", "since", "open", "incident"]],
                 hide_index=True, width="stretch", column_config={
                     "open": st.column_config.LinkColumn("evidence", display_text="model page"),
                     "value": st.column_config.NumberColumn(format="%.4g")})
    pick = st.selectbox("Evidence SQL of incident", sorted(set(hist.incident)), key="alerts_incident")
    row = hist[hist.incident == pick].iloc[0]
    st.code(row.evidence_sql or "-- no evidence SQL recorded", language="sql")
