"""Free-text features in the drill-down: length distribution and PII entity counts, not categories.

A string value that is free text by the store's rule (``collector/store/free_text.py``: long, many
words, or a scrubber placeholder inside other text) is kept out of the categorical rollup. This
panel shows instead, for one feature, how many text values there were, their length by bucket and
how often each entity type was masked (the placeholders the scrubber left: ``<PERSON>``,
``<PHONE_NUMBER>``, ...). It reads the raw log (``free_text.TEXT_SELECT``): there is no text
rollup yet (see ``free_text.py``), so over long ranges of millions of rows it takes seconds.

The feature drill-down calls :func:`render_text_feature` for a string feature; it returns ``True``
when the feature had only free text in the slice, so the drill-down skips its category chart.
"""

from __future__ import annotations

from typing import Any

from driftline.collector.store.free_text import TEXT_SELECT
from driftline.dashboard.panel import P, Query, query, served_where
from driftline.dashboard.view import View

_FEATURE = "feature = {feature:String}"


def _raw(w: str) -> str:
    return f"(SELECT * FROM ({TEXT_SELECT.format(src=P, where=w)}) WHERE {_FEATURE})"


def _panel(name: str, v: View, feature: str, sql: str) -> Query:
    w, p = served_where(v)
    return query(name, sql.format(src=_raw(w)), {**p, "feature": feature})


def text_lengths(v: View, feature: str) -> Query:
    """Per length bucket (``len_bin``: its smallest length): text values, their total, shortest
    and longest length, and how many held at least one masked entity."""
    return _panel("model.text_lengths", v, feature, """
SELECT len_bin, sum(n) AS n, sum(chars) AS chars, min(len_lo) AS len_lo, max(len_hi) AS len_hi,
       sum(flagged) AS flagged
FROM {src} GROUP BY len_bin ORDER BY len_bin""")


def text_entities(v: View, feature: str) -> Query:
    """Masked entities in the feature's text values, by type (placeholders counted)."""
    return _panel("model.text_entities", v, feature, """
SELECT entity, sum(k) AS n FROM {src} ARRAY JOIN mapKeys(entities) AS entity, mapValues(entities) AS k
GROUP BY entity ORDER BY n DESC, entity""")


def summary(lengths: Any) -> dict[str, float]:
    """Totals of a :func:`text_lengths` frame: values, mean length, share with an entity."""
    n = float(lengths.n.sum()) if len(lengths) else 0.0
    return {"values": n, "mean_chars": float(lengths.chars.sum()) / n if n else 0.0,
            "with_entity": float(lengths.flagged.sum()) / n if n else 0.0}


def render_text_feature(ctx: Any, feature: str) -> bool:
    """Show ``feature``'s free-text values (if any); ``True`` when it had no categories at all."""
    import plotly.graph_objects as go
    import streamlit as st

    from driftline.dashboard import queries
    from driftline.dashboard.ui import data, fig_defaults, plot

    lengths = data(ctx, text_lengths(ctx.view, feature))
    if lengths is None or not len(lengths):
        return False
    entities = data(ctx, text_entities(ctx.view, feature))
    s = summary(lengths)
    st.markdown(f"**{feature}: free text** — {s['values']:,.0f} values, mean {s['mean_chars']:,.0f} "
                f"characters, {s['with_entity']:.1%} with a masked entity. Free text is not rolled up "
                "as categories; its lengths and masked entities are.")
    left, right = st.columns(2)
    with left:
        fig = go.Figure([go.Bar(x=[f"{int(r.len_lo)}–{int(r.len_hi)}" for r in lengths.itertuples()],
                                y=list(lengths.n), marker_color="#1f77b4")])
        plot(fig_defaults(fig, "length (characters)", y_title="values"))
    with right:
        if entities is not None and len(entities):
            fig = go.Figure([go.Bar(x=list(entities.entity), y=list(entities.n), marker_color="#d62728")])
            plot(fig_defaults(fig, "masked entities (placeholders)", y_title="count"))
        else:
            st.caption("No masked entities in these values.")
    cats = data(ctx, queries.categorical_hist(ctx.view, feature))
    return cats is None or not len(cats)


__all__ = ["render_text_feature", "summary", "text_entities", "text_lengths"]
