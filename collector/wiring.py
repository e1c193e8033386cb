"""Build the pipeline's PII scrub stage from settings.

Its policies are read from the YAML file named in the settings and validated here, at start-up,
so a bad configuration stops the collector with a message instead of failing on the first event.
The detector stage is not built here: it comes from ``detectors/stage.py``, handed to
:func:`~driftline.collector.app.run_collector` by ``driftline collector`` (``cli/collector.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from driftline.collector.config import CollectorSettings
from driftline.sdk.errors import ConfigError


def load_yaml(path: Path, what: str) -> Mapping[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML ({exc})") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    return doc


def build_scrubber(settings: CollectorSettings, registry: Any, env: Mapping[str, str] | None = None) -> Any:
    """The Presidio scrub stage. On by default: every string is scrubbed before it is stored.

    ``pii: {enabled: false}`` in the PII config turns it off (for data known to hold no PII).
    """
    from driftline.collector.pii.scrub import Scrubber
    from driftline.collector.pii.config import ScrubConfig, load_hash_key

    raw: dict[str, Any] = {}
    if settings.pii_config is not None:
        doc = load_yaml(settings.pii_config, "PII config")
        raw = dict(doc.get("pii", doc) or {})
    enabled = raw.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("pii.enabled: expected true or false")
    if not enabled:
        return None
    key = load_hash_key(os.environ if env is None else env, settings.pii_key_file)
    return Scrubber(ScrubConfig.from_mapping(raw, hash_key=key), registry=registry)
