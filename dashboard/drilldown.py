"""Feature drill-down: reference against current histogram, and the test statistics.

The reference is the version's stored reference (``driftline.references``, the same bins the
detectors use) or, when none exists, earlier traffic (the previous period, or the first half
of the range when nothing is older). Bin counts come from
ClickHouse; only the few per-bin numbers reach Python, where the tests are the detectors' own
functions (``detectors/univariate.py``), so the page and the detectors agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import streamlit as st

from driftline.dashboard import detector_queries, queries, text_panel
from driftline.dashboard.ui import Ctx, data, fig_defaults, plot, utc


@dataclass(frozen=True)
class Histograms:
    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    ref_sums: tuple[float, ...] = ()
    cur_sums: tuple[float, ...] = ()
    ref_std: float = 0.0
    source: str = ""


def _stored_profile(ctx: Ctx, feature: str) -> tuple[dict[str, Any] | None, str]:
    ref = data(ctx, queries.reference_profile(ctx.view.model, ctx.view.version), quiet_missing=True)
    if ref is None or not len(ref):
        return None, ""
    profile = json.loads(ref.profile.iloc[0])
    for p in profile.get("features", []) + profile.get("outputs", []):
        if p.get("name") == feature:
            return p, f"stored reference of {ref.model_version.iloc[0]} ({int(ref.n_rows.iloc[0]):,} rows)"
    return None, ""


def _bin_labels(edges: list[float]) -> tuple[str, ...]:
    fmt = lambda x: f"{x:.4g}"  # noqa: E731
    inner = [f"[{fmt(a)}, {fmt(b)})" for a, b in zip(edges, edges[1:])]
    return (f"< {fmt(edges[0])}", *inner, f"≥ {fmt(edges[-1])}")


def _numeric_counts(ctx: Ctx, view: Any, feature: str, edges: list[float],
                    exact: bool = False) -> tuple[list[float], list[float]] | None:
    df = data(ctx, queries.numeric_hist(view, feature, edges, raw=exact))
    if df is None:
        return None
    counts, sums = [0.0] * (len(edges) + 1), [0.0] * (len(edges) + 1)
    for r in df.itertuples():
        counts[int(r.bin)], sums[int(r.bin)] = float(r.n), float(r.s)
    return counts, sums


def _baseline(ctx: Ctx) -> tuple[Any, Any, str]:
    """(reference view, current view, description) when no reference is stored: the previous
    period of equal length if it holds data, else the first half of the range against the second."""
    from driftline.dashboard import queries as q

    v = ctx.view
    prev = v.with_(start=v.start - (v.end - v.start), end=v.start)
    has = data(ctx, q.volume(prev))
    if has is not None and len(has) and int(has.n.sum()) >= 50:
        return prev, v, "previous period (no stored reference for this version)"
    mid = v.start + (v.end - v.start) / 2
    return (v.with_(end=mid), v.with_(start=mid),
            f"first half of the range, before {mid:%H:%M:%S} UTC, against the second half "
            "(no stored reference, no earlier data)")


def histograms(ctx: Ctx, feature: str, kind: str, exact: bool = False) -> Histograms | None:
    """Reference and current histograms of ``feature``; numeric counts come from the hourly
    feature rollup (approximate inside the bin each edge cuts) unless ``exact``."""
    stored, source = _stored_profile(ctx, feature)
    prev, v, base_source = (ctx.view, ctx.view, "") if stored else _baseline(ctx)
    if kind == "numeric":
        if stored and stored.get("kind") == "numeric":
            edges = [float(e) for e in stored["edges"]]
            ref = ([float(c) for c in stored["counts"]], [float(s) for s in stored.get("sums", [])])
            std = float(stored.get("std") or 0.0)
        else:
            q = data(ctx, queries.numeric_edges(prev, feature))
            if q is None or not len(q) or q.lo.iloc[0] is None or q.lo.iloc[0] != q.lo.iloc[0]:
                return None
            edges = sorted({float(q.lo.iloc[0]), *map(float, q.q.iloc[0]), float(q.hi.iloc[0])})
            counted = _numeric_counts(ctx, prev, feature, edges, exact)
            if counted is None:
                return None
            ref, std, source = counted, 0.0, base_source
        cur = _numeric_counts(ctx, v, feature, edges, exact)
        if cur is None:
            return None
        return Histograms(_bin_labels(edges), tuple(ref[0]), tuple(cur[0]), tuple(ref[1]),
                          tuple(cur[1]), std, source)
    cur_df = data(ctx, queries.categorical_hist(v, feature))
    if cur_df is None:
        return None
    cur_map = dict(zip(cur_df.category.astype(str), cur_df.n.astype(float)))
    if stored and stored.get("kind") != "numeric":
        cats = [str(c) for c in stored["categories"]]
        ref_counts = [float(c) for c in stored["counts"]]
    else:
        ref_df = data(ctx, queries.categorical_hist(prev, feature))
        if ref_df is None:
            return None
        cats = [str(c) for c in ref_df.category][:20]
        ref_counts = [float(n) for n in ref_df.n][:20] + [float(ref_df.n[20:].sum())]
        source = base_source
    cur_counts = [cur_map.pop(c, 0.0) for c in cats] + [sum(cur_map.values())]
    return Histograms((*cats, "other / unseen"), tuple(ref_counts), tuple(cur_counts), source=source)


def tests(h: Histograms, kind: str) -> list[dict[str, Any]]:
    """The detectors' statistics on the two histograms (computed in Python on a few numbers)."""
    from driftline.detectors import univariate as u

    ref, cur = list(h.reference), list(h.current)
    whole = lambda xs: [int(round(x)) for x in xs]  # noqa: E731  (rolled-up counts may be split)
    out = [{"statistic": "psi", "value": u.psi(ref, cur), "p_value": None},
           {"statistic": "jensen_shannon", "value": u.js_distance(ref, cur), "p_value": None}]
    if kind == "numeric":
        d, p = u.ks_binned(whole(ref), whole(cur))
        out.append({"statistic": "ks", "value": d, "p_value": p})
        if h.ref_std > 0 and len(h.ref_sums) == len(ref):
            out.append({"statistic": "wasserstein", "value": u.wasserstein_binned(
                whole(ref), list(h.ref_sums), whole(cur), list(h.cur_sums),
                h.ref_std), "p_value": None})
    else:
        stat, p = u.chi2_homogeneity(whole(ref), whole(cur))
        out.append({"statistic": "chi2", "value": stat, "p_value": p})
    return out


def render_drilldown(ctx: Ctx, suggested: tuple[str, ...] = ()) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    v = ctx.view
    st.subheader("Feature drill-down")
    feats = data(ctx, queries.features(v))
    if feats is None or not len(feats):
        st.caption("No input features logged for this slice.")
        return
    names = [str(n) for n in feats.name]
    # A linked feature first, else the one drifting hardest, else the first by name.
    pick = v.feature if v.feature in names else next((f for f in suggested if f in names), names[0])
    index = names.index(pick)
    feature = st.selectbox("Feature", names, index=index, key="feature")
    kind = str(feats[feats.name == feature].kind.iloc[0])
    if kind != "numeric" and text_panel.render_text_feature(ctx, feature):  # free text: no category chart
        return
    exact = kind == "numeric" and st.checkbox(
        "Exact bin counts", key="exact_hist",
        help="Counts come from an hourly rollup of each feature in up to 32 equi-depth bins per hour; the bins "
             "that a reference edge cuts are split by a density fitted to each bin's mean. Tick to count "
             "exactly from the prediction log instead (reads every row: seconds over millions).")
    h = histograms(ctx, feature, kind, exact)
    if h is None or not sum(h.current):
        st.info(f"No values of '{feature}' in this slice.")
        return
    ref_total, cur_total = sum(h.reference) or 1.0, sum(h.current) or 1.0
    fig = go.Figure([
        go.Bar(x=list(h.labels), y=[c / ref_total for c in h.reference], name="reference",
               marker_color="#7f7f7f"),
        go.Bar(x=list(h.labels), y=[c / cur_total for c in h.current], name="current",
               marker_color="#d62728")])
    fig.update_layout(barmode="group")
    left, right = st.columns([3, 2])
    with left:
        plot(fig_defaults(fig, f"{feature}: reference vs current (share per bin)", y_title="share"))
        approx = ("" if exact or kind != "numeric" else
                  " · current counts approximate at bin edges (hourly rollup, up to 32 bins per hour)")
        st.caption(f"Reference: {h.source or 'stored reference'} · reference n={round(sum(h.reference)):,} "
                   f"· current n={round(sum(h.current)):,}{approx}")
    with right:
        st.markdown("**Test statistics on these histograms**")
        st.dataframe(pd.DataFrame(tests(h, kind)), hide_index=True, width="stretch",
                     column_config={"value": st.column_config.NumberColumn(format="%.4f"),
                                    "p_value": st.column_config.NumberColumn(format="%.2e")})
        det = data(ctx, detector_queries.feature_tests(v, feature), quiet_missing=True)
        if det is not None and len(det):
            st.markdown("**Detector output (latest window in range)**")
            utc(det, "last_window")
            st.dataframe(det, hide_index=True, width="stretch")
