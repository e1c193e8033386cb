"""PII policies (pii/config.py): strict validation at start-up and the HMAC key."""

from __future__ import annotations

import pytest

from driftline.collector.pii.config import ScrubConfig, load_hash_key
from driftline.sdk.errors import ConfigError


def test_config_is_strict():
    with pytest.raises(ConfigError, match=r"pii\.entitys"):
        ScrubConfig.from_mapping({"entitys": ["PERSON"]})
    with pytest.raises(ConfigError, match=r"pii\.models\.churn\.feilds"):
        ScrubConfig.from_mapping({"models": {"churn": {"feilds": {}}}})
    with pytest.raises(ConfigError, match="unknown policy 'mask'"):
        ScrubConfig.from_mapping({"fields": {"features.a": "mask"}})
    with pytest.raises(ConfigError, match="bad field path"):
        ScrubConfig.from_mapping({"fields": {"feature.a": "keep"}})
    with pytest.raises(ConfigError, match="DRIFTLINE_PII_HASH_KEY"):
        ScrubConfig.from_mapping({"fields": {"tags.user_id": "hash"}})
    with pytest.raises(ConfigError, match="score_threshold"):
        ScrubConfig.from_mapping({"score_threshold": 2})


def test_load_hash_key(tmp_path):
    assert load_hash_key({}) is None
    assert load_hash_key({"DRIFTLINE_PII_HASH_KEY": "k" * 20}) == b"k" * 20
    f = tmp_path / "key"
    f.write_bytes(b"f" * 32 + b"\n")
    assert load_hash_key({"DRIFTLINE_PII_HASH_KEY": "k" * 20}, f) == b"f" * 32
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        load_hash_key({"DRIFTLINE_PII_HASH_KEY": "short"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_hash_key({}, tmp_path / "missing")
