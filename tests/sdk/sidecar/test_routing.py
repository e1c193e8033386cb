"""Weighted routing, sticky keys, weight changes and split files."""

from __future__ import annotations

import random

import pytest

from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.routing import Router, SplitConfig, SplitFileWatcher, key_point


def split(**weights: float) -> SplitConfig:
    return SplitConfig.parse({"variants": [{"name": n, "upstream": f"http://{n}", "weight": w}
                                           for n, w in weights.items()]})


def test_random_split_follows_the_weights() -> None:
    router = Router(split(a=90, b=10), rng=random.Random(7))
    counts = {"a": 0, "b": 0}
    for _ in range(10_000):
        counts[router.choose().name] += 1
    assert 8_700 < counts["a"] < 9_300  # 90 % +- a generous margin for 10k draws


def test_sticky_keys_keep_their_variant_and_split_by_weight() -> None:
    router = Router(split(a=50, b=50))
    first = {k: router.choose(f"user{k}").name for k in range(2000)}
    assert first == {k: router.choose(f"user{k}").name for k in range(2000)}
    share_b = sum(v == "b" for v in first.values()) / 2000
    assert 0.45 < share_b < 0.55
    # moving 10 % of weight moves only the keys in that slice
    router.set_weights({"a": 60, "b": 40})
    after = {k: router.choose(f"user{k}").name for k in range(2000)}
    moved = [k for k in first if first[k] != after[k]]
    assert all(first[k] == "b" and after[k] == "a" for k in moved)
    assert 0.05 < len(moved) / 2000 < 0.15


def test_rollback_is_weight_zero_for_every_key() -> None:
    router = Router(split(stable=90, canary=10))
    router.set_weights({"canary": 0})
    assert {router.choose(f"k{i}").name for i in range(1000)} == {"stable"}
    assert {router.choose().name for _ in range(200)} == {"stable"}
    assert router.generation == 1


def test_key_point_is_stable_and_uniform_enough() -> None:
    assert key_point("abc") == key_point("abc")
    points = [key_point(str(i)) for i in range(5000)]
    assert all(0 <= p < 1 for p in points)
    assert 0.45 < sum(p < 0.5 for p in points) / 5000 < 0.55


@pytest.mark.parametrize("data, message", [
    ({"variants": []}, "at least one variant"),
    ({"variants": [{"name": "a", "upstream": "http://a", "weight": 0}]}, "weight above zero"),
    ({"variants": [{"name": "a", "upstream": "http://a", "wieght": 1}]}, "unknown key"),
    ({"variants": [{"name": "a", "upstream": "ftp://a"}]}, "http"),
    ({"variants": [{"name": "a", "upstream": "http://a"}, {"name": "a", "upstream": "http://b"}]}, "unique"),
    ({"variants": [{"name": "a", "upstream": "http://a", "weight": -1}]}, ">= 0"),
    ({"variants": [{"name": "shadow", "upstream": "http://a"}]}, "reserved"),
    ({"variant": []}, "unknown key"),
])
def test_bad_split_configs_fail_with_a_message(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SplitConfig.parse(data)


def test_set_weights_rejects_unknown_variants_and_keeps_the_old_split() -> None:
    router = Router(split(a=1, b=1))
    with pytest.raises(ConfigError, match="unknown variant"):
        router.set_weights({"c": 1})
    with pytest.raises(ConfigError, match="weight above zero"):
        router.set_weights({"a": 0, "b": 0})
    assert [v.weight for v in router.split.variants] == [1.0, 1.0] and router.generation == 0


def test_file_watcher_reloads_on_change_and_keeps_last_good(tmp_path) -> None:
    f = tmp_path / "split.json"
    f.write_text('{"variants": [{"name": "a", "upstream": "http://a", "weight": 1}]}')
    router = Router(SplitConfig.load(f))
    errors: list[Exception] = []
    watcher = SplitFileWatcher(f, router, on_error=errors.append)
    assert watcher.check() is False  # unchanged
    f.write_text('{"variants": [{"name": "a", "upstream": "http://a", "weight": 1},'
                 ' {"name": "b", "upstream": "http://b", "weight": 3}], "sticky_header": "X-User"}')
    assert watcher.check() is True
    assert [v.name for v in router.split.variants] == ["a", "b"] and router.split.sticky_header == "X-User"
    f.write_text("{not json")
    assert watcher.check() is False and len(errors) == 1 and watcher.errors == 1
    assert [v.name for v in router.split.variants] == ["a", "b"]
