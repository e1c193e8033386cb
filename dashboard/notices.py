"""Notices shown above a model's panels: what the collector could not check, and what to do.

The collector writes a ``reference_missing`` row (detector ``reference``) for each window of a
model version whose ``reference.source`` is ``stored`` with no reference stored (its drift is not
checked, detectors/monitor.py); the Model page shows them here, whatever segment is selected.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from driftline.dashboard.panel import Query, in_range, query
from driftline.dashboard.ui import Ctx, data
from driftline.dashboard.view import View
from driftline.detectors.base import REFERENCE_NOTICE_DETECTOR, STAT_REFERENCE_MISSING

__all__ = ["reference_missing", "render_notices"]


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


def render_notices(ctx: Ctx) -> None:
    """A warning per version of the model that had no usable reference in the range."""
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
