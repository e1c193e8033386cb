"""Shadow and A/B: agreement and divergence with the shadow, per-variant metrics, outcome tests."""

from __future__ import annotations

import math

import streamlit as st

from driftline.dashboard import queries
from driftline.dashboard.ui import COLORS, Ctx, data, empty, fig_defaults, pct, plot, utc


def welch(n1: float, m1: float, v1: float, n0: float, m0: float, v0: float) -> tuple[float, float]:
    """Welch's t-test from per-arm aggregates: (t statistic, two-sided p-value)."""
    from scipy import stats

    if n1 < 2 or n0 < 2:
        return float("nan"), float("nan")
    se2 = v1 / n1 + v0 / n0
    if se2 <= 0:
        return float("nan"), float("nan")
    t = (m1 - m0) / math.sqrt(se2)
    df = se2 ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v0 / n0) ** 2 / (n0 - 1))
    return t, float(2 * stats.t.sf(abs(t), df))


def render(ctx: Ctx) -> None:
    v = ctx.view
    st.title(f"Shadow and A/B: {v.model} {v.version}".rstrip())
    variants = data(ctx, queries.variant_metrics(v))
    if variants is None:
        return
    if not len(variants):
        empty("No predictions in this slice.", "widen the time range.")
        return
    _shadow(ctx)
    st.subheader("Per-variant metrics")
    acc = data(ctx, queries.variant_accuracy(v))
    if acc is not None and len(acc):
        variants = variants.merge(acc, on="variant", how="left")
    st.dataframe(variants, hide_index=True, width="stretch", column_config={
        "error_rate": st.column_config.NumberColumn(format="percent"),
        "accuracy": st.column_config.NumberColumn(format="percent"),
        "p50_ms": st.column_config.NumberColumn(format="%.1f"),
        "p95_ms": st.column_config.NumberColumn(format="%.1f"),
        "mean_confidence": st.column_config.NumberColumn(format="%.3f")})
    _outcomes(ctx)


def _shadow(ctx: Ctx) -> None:
    import plotly.express as px
    import plotly.graph_objects as go

    st.subheader("Primary vs shadow")
    agree = data(ctx, queries.shadow_agreement(ctx.view))
    if agree is None:
        return
    if not len(agree):
        empty("No shadow predictions paired with primary ones.",
              "log the shadow model with `variant='shadow'` and the primary's `request_id` "
              "(the sidecar does this for shadows it mirrors).")
        return
    utc(agree, "t")
    pairs = int(agree.pairs.sum())
    overall = (agree.agreement * agree.pairs).sum() / max(1, pairs)
    c = st.columns(4)
    c[0].metric("Paired requests", f"{pairs:,}")
    c[1].metric("Agreement", pct(overall))
    c[2].metric("Latest bucket agreement", pct(agree.agreement.iloc[-1]))
    c[3].metric("Shadow latency delta", f"{(agree.latency_delta_ms * agree.pairs).sum() / max(1, pairs):+.1f} ms")
    left, right = st.columns(2)
    with left:
        fig = go.Figure([go.Scatter(x=agree.t, y=agree.agreement, name="agreement", mode="lines"),
                         go.Scatter(x=agree.t, y=agree.mean_abs_diff, name="mean |score diff|",
                                    mode="lines", yaxis="y2")])
        fig.update_layout(yaxis=dict(range=[0, 1], title="agreement"),
                          yaxis2=dict(overlaying="y", side="right", title="mean |diff|"))
        plot(fig_defaults(fig, "Agreement and score divergence over time"))
    with right:
        div = data(ctx, queries.shadow_confusion(ctx.view))
        if div is not None and len(div):
            pivot = div.pivot_table(index="primary_label", columns="shadow_label", values="n", fill_value=0)
            fig = px.imshow(pivot, text_auto=True, color_continuous_scale="Purples",
                            labels=dict(x="shadow", y="primary", color="requests"))
            plot(fig_defaults(fig, "Where they disagree (primary × shadow)"))


def _outcomes(ctx: Ctx) -> None:
    import pandas as pd
    import plotly.express as px

    st.subheader("Outcome tests (A/B)")
    out = data(ctx, queries.outcome_stats(ctx.view))
    if out is None:
        return
    if not len(out):
        empty("No outcomes linked to predictions in this slice.",
              "log business outcomes with `monitor.log_outcome(name, value, prediction_id=…)`.")
        return
    control = "primary"
    rows = []
    for name, g in out.groupby("outcome"):
        base = g[g.variant == control]
        for r in g.itertuples():
            row = {"outcome": name, "variant": r.variant, "n": int(r.n), "mean": r.mean}
            if len(base) and r.variant != control:
                b = base.iloc[0]  # a Series: index it, since .mean and .var are its methods
                t, p = welch(r.n, r.mean, r.var, b["n"], b["mean"], b["var"])
                row.update({"lift vs primary": r.mean - b["mean"],
                            "relative lift": (r.mean - b["mean"]) / b["mean"] if b["mean"] else float("nan"),
                            "t": t, "p_value": p, "significant (α=0.05)": bool(p < 0.05)})
            rows.append(row)
    table = pd.DataFrame(rows)
    left, right = st.columns([2, 3])
    with left:
        fig = px.bar(out, x="outcome", y="mean", color="variant", barmode="group",
                     color_discrete_map=COLORS,
                     error_y=(out["var"].clip(lower=0) / out["n"].clip(lower=1)) ** 0.5 * 1.96)
        plot(fig_defaults(fig, "Outcome mean per variant (95% CI)"))
    with right:
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "mean": st.column_config.NumberColumn(format="%.4f"),
            "lift vs primary": st.column_config.NumberColumn(format="%+.4f"),
            "relative lift": st.column_config.NumberColumn(format="percent"),
            "p_value": st.column_config.NumberColumn(format="%.2e")})
        st.caption("Welch's t-test of each arm against `primary`, from per-arm counts, means and "
                   "variances computed in ClickHouse.")
