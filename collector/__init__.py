"""driftline.collector: the Kafka consumer, validation, PII scrubbing, the embedded broker and
store; ``collector/store`` is the store's one home (client, tables, one migrate, writer, deletion).

Public names are imported on first use, so importing one submodule stays cheap.
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "CollectorSettings": "driftline.collector.config",
    "run_collector": "driftline.collector.app",
    "Pipeline": "driftline.collector.pipeline",
    "ClickHouseWriter": "driftline.collector.store.writer",
    "migrate": "driftline.collector.store.tables",
    "connect": "driftline.collector.store.client",
    "start_broker": "driftline.collector.broker",
    "ensure_topics": "driftline.collector.broker",
    "start_chstore": "driftline.collector.chstore",
    "ChStoreProcess": "driftline.collector.chstore",
    "ChStoreSettings": "driftline.collector.chstore",
    "ChStoreError": "driftline.collector.chstore",
    "Scrubber": "driftline.collector.scrub",
    "hash_value": "driftline.collector.scrub",
    "ScrubConfig": "driftline.collector.scrub_config",
    "ModelPolicy": "driftline.collector.scrub_config",
    "load_hash_key": "driftline.collector.scrub_config",
    "delete_rows": "driftline.collector.store.deletion",
    "DeletionReport": "driftline.collector.store.deletion",
    "DeletionError": "driftline.collector.store.deletion",
    "Stack": "driftline.collector.stack",
    "StackOptions": "driftline.collector.stack",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
