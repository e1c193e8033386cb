"""driftline.detectors: streaming drift, concept-drift, shadow, A/B and data-quality detectors.

Public names are imported on first use, so importing one submodule stays cheap.
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "DetectorEngine": "driftline.detectors.engine",
    "MetricRow": "driftline.detectors.base",
    "DetectorResult": "driftline.detectors.base",
    "Detector": "driftline.detectors.base",
    "DetectorsConfig": "driftline.detectors.config",
    "ModelConfig": "driftline.detectors.config",
    "load_config": "driftline.detectors.config",
    "Reference": "driftline.detectors.reference",
    "ReferenceStore": "driftline.detectors.reference_store",
    "from_dataframe": "driftline.detectors.reference",
    "from_file": "driftline.detectors.reference",
    "from_events": "driftline.detectors.reference",
    "from_prediction_log": "driftline.detectors.reference",
    "write_rows": "driftline.detectors.sink",
    "migrate": "driftline.collector.store.tables",  # the store's one migrate: every table
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
