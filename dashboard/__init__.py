"""driftline.dashboard: the Streamlit app (reads ClickHouse only).

Public names are imported on first use, so importing one submodule stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DashboardSettings": "driftline.dashboard.data",
    "DataError": "driftline.dashboard.data",
    "SeedSpec": "driftline.dashboard.seed",
    "seed": "driftline.dashboard.seed",
    "link": "driftline.dashboard.view",
    "parse_params": "driftline.dashboard.view",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'driftline.dashboard' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
