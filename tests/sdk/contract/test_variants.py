"""Variant roles and pairing keys (sdk/contract/variants.py)."""

from __future__ import annotations

import pytest

from driftline.sdk.contract.variants import ARM, CANARY, PRIMARY, SHADOW, pair_key, role_of, variant_for
from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.config import ShadowTarget, parse_shadow
from driftline.sdk.sidecar.routing import SplitConfig


@pytest.mark.parametrize(("variant", "role"), [
    (None, PRIMARY), ("", PRIMARY), ("primary", PRIMARY), ("shadow", SHADOW), ("shadow:candidate", SHADOW),
    ("shadow2", SHADOW), ("canary:v2", CANARY), ("challenger", ARM), ("canary", ARM)])
def test_roles_of_new_and_old_variant_names(variant: str | None, role: str) -> None:
    assert role_of(variant) == role


def test_variant_names_round_trip_through_their_role() -> None:
    for role, name in ((SHADOW, "candidate"), (SHADOW, "shadow"), (SHADOW, "shadow3"), (CANARY, "v2"),
                       (ARM, "challenger"), (PRIMARY, "primary")):
        assert role_of(variant_for(role, name)) == role
    assert variant_for(SHADOW, "candidate") == "shadow:candidate" and variant_for(SHADOW, "shadow") == "shadow"
    with pytest.raises(ValueError, match="role 'mirror'"):
        variant_for("mirror", "x")


def test_pairs_are_keyed_by_request_and_row() -> None:
    assert pair_key("r", {"row": "0"}) != pair_key("r", {"row": "1"}) != pair_key("r", None)
    assert pair_key("r", {"row": "1", "region": "eu"}) == pair_key("r", {"row": "1"})


def test_shadow_flag_takes_a_name_and_a_version() -> None:
    assert parse_shadow("http://h:1", 0) == ShadowTarget("shadow", "http://h:1", None)
    assert parse_shadow("http://h:1", 1) == ShadowTarget("shadow2", "http://h:1", None)
    assert parse_shadow("candidate=http://h:1/@v2.1", 0) == ShadowTarget("candidate", "http://h:1", "v2.1")
    assert parse_shadow("http://user:pw@h:1", 0).url == "http://user:pw@h:1"  # credentials, not a version
    with pytest.raises(ConfigError, match="without ':'"):
        parse_shadow("a:b=http://h:1", 0)


def test_split_roles_and_reserved_names() -> None:
    split = SplitConfig.parse({"variants": [
        {"name": "primary", "upstream": "http://a", "weight": 9},
        {"name": "v2", "upstream": "http://b", "weight": 1, "role": "canary", "version": "2"},
        {"name": "challenger", "upstream": "http://c", "weight": 1}]})
    assert [v.event_variant for v in split.variants] == ["primary", "canary:v2", "challenger"]
    for bad, message in (({"name": "shadowy", "upstream": "http://a"}, "reserved"),
                         ({"name": "a:b", "upstream": "http://a"}, "reserved"),
                         ({"name": "a", "upstream": "http://a", "role": "shadow"}, "role 'shadow' must be one of")):
        with pytest.raises(ConfigError, match=message):
            SplitConfig.parse({"variants": [bad]})
