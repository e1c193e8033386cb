"""detectors/statediff.py: a patch turns the old document into the new one, JSON round trip
included, and holds only what changed."""

from __future__ import annotations

import json
import math

from driftline.detectors.statediff import SAME, apply, copy_json, diff


def _roundtrip(old, new):
    patch = json.loads(json.dumps(diff(old, new)))  # what is saved is JSON
    return apply(json.loads(json.dumps(old)), patch)


def test_a_patch_turns_old_into_new_through_json():
    old = {"hist": {"counts": [0, 3, 1, 0], "sums": [0.0, 1.5, 2.0, 0.0], "n": 4, "unseen": {"q": 1}},
           "flags": [True, False], "gone": {"a": 1}, "nan": float("nan"), "rows": [[1, "a"], [2, "b"]]}
    new = {"hist": {"counts": [0, 4, 1, 0], "sums": [0.0, 2.5, 2.0, 0.0], "n": 5, "unseen": {"q": 1, "r": 2}},
           "flags": [1, 0], "nan": float("nan"), "rows": [[1, "a"], [2, "c"]], "added": [1, 2]}
    got = _roundtrip(old, new)
    assert json.dumps(got, sort_keys=True) == json.dumps(new, sort_keys=True)
    assert type(got["flags"][0]) is int  # True -> 1 is a change (JSON tells them apart)
    assert diff({"x": float("nan")}, {"x": float("nan")}) is None and math.isnan(got["nan"])


def test_a_patch_holds_the_changed_bins_only_and_skips_same():
    old = {"a": list(range(100)), "b": {"deep": list(range(100))}}
    new = copy_json(old)
    new["a"][7] = -1
    new["b"] = SAME  # not compared, whatever it holds
    patch = diff(old, new)
    assert patch == {"d": {"a": {"i": [[7, -1]]}}}
    assert diff(old, copy_json(old)) is None
    assert apply(copy_json(old), patch)["a"][7] == -1


def test_copy_json_shares_nothing_mutable():
    doc = {"a": [1, [2, 3]], "b": ({"c": [4]},)}
    c = copy_json(doc)
    c["a"][1].append(9)
    c["b"][0]["c"].append(9)
    assert doc == {"a": [1, [2, 3]], "b": ({"c": [4]},)}


def test_a_grown_buffer_is_an_append():
    old = {"sample": [[1.0, 2.0], [3.0, 4.0]]}
    new = {"sample": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}
    assert diff(old, new) == {"d": {"sample": {"a": [[5.0, 6.0]]}}}
    assert _roundtrip(old, new) == new
    assert _roundtrip(new, old) == old  # shrunk: replaced whole
