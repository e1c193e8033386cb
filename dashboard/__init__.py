"""driftline.dashboard: the Streamlit app (reads ClickHouse only).

Public names are imported on first use, so importing one submodule stays cheap.
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "DashboardSettings": "driftline.dashboard.data",
    "DataError": "driftline.dashboard.data",
    "link": "driftline.dashboard.view",
    "parse_params": "driftline.dashboard.view",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
