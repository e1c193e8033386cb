"""driftline.collector.pii: the PII scrub stage, every string scrubbed before ClickHouse.

* ``scrub.py`` — :class:`Scrubber`, the pipeline's stage: field policies, traversal of each event,
  cache lookups, fail-closed masking; :func:`hash_value`, the stored form of a ``hash`` value;
* ``analysis.py`` — what runs on the values the cache has not seen: the pattern fast path,
  gated and batched NER, Presidio analysis and anonymization within the time budget;
* ``shapes.py`` — compiled regexes for every pattern entity (phone, card, IBAN, national ids,
  email, IP, MAC, date of birth): the shape is enough, no validation (``pattern_mode: shape``);
* ``config.py`` — :class:`ScrubConfig` / :class:`ModelPolicy`, the policies (YAML named by
  ``DRIFTLINE_PII_CONFIG``), validated at start-up; :func:`load_hash_key`;
* ``cache.py`` — a bounded LRU of scrub results keyed by a keyed hash of the value;
* ``offline.py`` — builds the Presidio engine (:func:`build_engine`) without touching the network.

Public names are imported on first use: importing the package does not load Presidio.

>>> from driftline.collector.pii import ScrubConfig
>>> ScrubConfig.from_mapping({"fields": {"features.plan": "keep"}}).policy_for("m", "features.plan")
'keep'
"""

from __future__ import annotations

from driftline.sdk.lazy import lazy_exports

_EXPORTS = {
    "Scrubber": "driftline.collector.pii.scrub",
    "hash_value": "driftline.collector.pii.scrub",
    "ScrubConfig": "driftline.collector.pii.config",
    "ModelPolicy": "driftline.collector.pii.config",
    "load_hash_key": "driftline.collector.pii.config",
    "PiiEngine": "driftline.collector.pii.offline",
    "build_engine": "driftline.collector.pii.offline",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
