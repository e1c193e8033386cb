"""driftline.collector: the stream path — the Kafka consumer (``app``), decoding and validation,
the pipeline, dead letters, metrics — and its subpackages: ``collector/pii`` (the PII scrub
stage), ``collector/store`` (the store's one home: client, tables, one migrate, writer, deletion)
and ``collector/embedded`` (the embedded broker and store, and ``driftline up``'s stack).

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
    "start_broker": "driftline.collector.embedded.broker",
    "ensure_topics": "driftline.collector.topics",
    "start_chstore": "driftline.collector.embedded.chstore",
    "ChStoreProcess": "driftline.collector.embedded.chstore",
    "ChStoreSettings": "driftline.collector.embedded.chstore",
    "ChStoreError": "driftline.collector.embedded.chstore",
    "Scrubber": "driftline.collector.pii.scrub",
    "hash_value": "driftline.collector.pii.scrub",
    "ScrubConfig": "driftline.collector.pii.config",
    "ModelPolicy": "driftline.collector.pii.config",
    "load_hash_key": "driftline.collector.pii.config",
    "delete_rows": "driftline.collector.store.deletion",
    "DeletionReport": "driftline.collector.store.deletion",
    "DeletionError": "driftline.collector.store.deletion",
    "Stack": "driftline.collector.embedded.stack",
    "StackOptions": "driftline.collector.embedded.stack",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
