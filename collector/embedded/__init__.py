"""driftline.collector.embedded: the whole stack on one machine, as ``driftline up`` runs it.

* ``stack.py`` — :class:`Stack` / :class:`StackOptions` / :func:`run_up`: start the engines and
  children, supervise, stop in order; ``drain.py`` — what the embedded broker still holds: the
  stop's drain into the collector and the backlog sampled for crash reports;
* ``supervisor.py`` — every child watched, a crashed one restarted with backoff;
  ``lifeline.py`` — children that cannot outlive ``up``;
* ``broker.py`` — the embedded Kafka broker (Tansu) (topics and backlogs: ``collector/topics.py``);
  ``produce_gate.py`` — a Kafka-aware relay in front of it that can hold producers;
  ``broker_retention.py`` — keeps the broker's memory bounded (topic rotation, DeleteRecords);
* ``chstore.py`` — the embedded ClickHouse store, one process owning a chDB data directory;
  ``chstore_engine.py`` — its connection pools and per-request settings; ``chstore_http.py`` —
  ClickHouse's HTTP interface over them;
* ``demo.py`` — a scikit-learn model wrapped with the SDK, with drifting traffic;
* ``cli.py`` — ``driftline up``, ``driftline store``, ``driftline demo``.

Public names are imported on first use, so importing one submodule stays cheap.

>>> from driftline.collector.embedded import StackOptions  # doctest: +SKIP
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "Stack": "driftline.collector.embedded.stack",
    "StackOptions": "driftline.collector.embedded.stack",
    "run_up": "driftline.collector.embedded.stack",
    "Supervisor": "driftline.collector.embedded.supervisor",
    "Child": "driftline.collector.embedded.supervisor",
    "GiveUp": "driftline.collector.embedded.supervisor",
    "start_broker": "driftline.collector.embedded.broker",
    "BrokerProcess": "driftline.collector.embedded.broker",
    "start_chstore": "driftline.collector.embedded.chstore",
    "ChStoreProcess": "driftline.collector.embedded.chstore",
    "ChStoreSettings": "driftline.collector.embedded.chstore",
    "ChStoreError": "driftline.collector.embedded.chstore",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
