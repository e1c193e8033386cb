"""Notices shown above a model's panels: what the collector could not check, and what to do.

The collector writes a ``reference_missing`` row (detector ``reference``) for each window of a
model version whose ``reference.source`` is ``stored`` with no reference stored (its drift is not
checked, detectors/monitor.py), and a ``joins_evicted`` row (detector ``memory``) for a window
after pending joins of the model were evicted for room (the collector's memory budget or the
model's ``concept.max_pending``: those predictions' labels can no longer be joined); the Model page
shows both here, whatever segment is selected.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from driftline.dashboard.panel import Query, in_range, query
from driftline.dashboard.ui import Ctx, data
from driftline.dashboard.view import View
from driftline.detectors.base import (
    MEMORY_NOTICE_DETECTOR, REFERENCE_NOTICE_DETECTOR, STAT_JOINS_EVICTED, STAT_REFERENCE_MISSING,
)

__all__ = ["joins_evicted", "reference_missing", "render_notices"]


def reference_missing(v: View) -> Query:
    """Per version of ``v``'s model, the predictions in range no reference could check, and the
    end of the last window that had some."""
    params: dict[str, Any] = {"model": v.model, "detector": REFERENCE_NOTICE_DETECTOR,
                              "statistic": STAT_REFERENCE_MISSING, "version": v.version or "",
                              **in_range(v.start, v.end)}
    return query("model.reference_missing", """
SELECT model_version, toUInt64(sum(value)) AS unchecked, max(window_end) AS last_window
FROM driftline.drift_metrics FINAL
WHERE model = {model:String} AND detector = {detector:String} AND statistic = {statistic:String}
  AND (model_version = {version:String} OR {version:String} = '')
  AND window_start >= toDateTime64({start:String}, 3, 'UTC') AND window_start < toDateTime64({end:String}, 3, 'UTC')
GROUP BY model_version ORDER BY model_version""", params)


def joins_evicted(v: View) -> Query:
    """Pending joins of ``v``'s model evicted for room in the range, by kind, and the last window
    that said so."""
    params: dict[str, Any] = {"model": v.model, "detector": MEMORY_NOTICE_DETECTOR, "statistic": STAT_JOINS_EVICTED,
                              **in_range(v.start, v.end)}
    return query("model.joins_evicted", """
SELECT toUInt64(sum(value)) AS evicted,
       toUInt64(sum(JSONExtractUInt(details, 'predictions'))) AS predictions,
       toUInt64(sum(JSONExtractUInt(details, 'labels'))) AS labels,
       max(window_end) AS last_window
FROM driftline.drift_metrics FINAL
WHERE model = {model:String} AND detector = {detector:String} AND statistic = {statistic:String}
  AND window_start >= toDateTime64({start:String}, 3, 'UTC') AND window_start < toDateTime64({end:String}, 3, 'UTC')
HAVING evicted > 0""", params)


def render_notices(ctx: Ctx) -> None:
    """A warning per version of the model that had no usable reference in the range, and one if
    pending joins of the model were evicted in the range."""
    ev = data(ctx, joins_evicted(ctx.view), quiet_missing=True)
    if ev is not None and len(ev):
        r = next(ev.itertuples())
        st.warning(
            f"**Label joins evicted for memory**: {int(r.evicted):,} pending joins of this model were dropped in this "
            f"range (last in the window ending {r.last_window:%Y-%m-%d %H:%M} UTC): {int(r.predictions):,} "
            f"predictions awaiting their label, {int(r.labels):,} labels awaiting their prediction, the rest shadows "
            "or outcomes. Their labels cannot be joined, so performance and concept drift see fewer of them. Raise "
            "`DRIFTLINE_DETECTOR_MEMORY_BUDGET_MB` (the collector's) or this model's `concept.max_pending`, or "
            "shorten `concept.label_horizon_s`.")
    df = data(ctx, reference_missing(ctx.view), quiet_missing=True)
    if df is None or not len(df):
        return
    for r in df.itertuples():
        version = r.model_version or "(no version)"
        st.warning(
            f"**No usable reference for version {version}**: {int(r.unchecked):,} predictions in this range "
            f"(last at {r.last_window:%Y-%m-%d %H:%M} UTC) were not checked for data or prediction drift. "
            f"Store one with `driftline reference set --model {ctx.view.model} --version {version} --file …` "
            "(or set `reference: {source: first_events}` in the model's detector settings).")
