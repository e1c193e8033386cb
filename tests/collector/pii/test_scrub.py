"""The scrub stage (pii/scrub.py): every string place, field policies, hashes, the cache, internal
errors and truncation, with the real Presidio engine and the real spaCy model (offline)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("presidio_analyzer")

from prometheus_client import CollectorRegistry  # noqa: E402

from driftline.collector.pii.config import ScrubConfig  # noqa: E402
from driftline.collector.pii.offline import build_engine  # noqa: E402
from driftline.collector.pii.scrub import Scrubber, hash_value  # noqa: E402

from .scrub_kit import KEY, TEST_ENTITIES, ev, make  # noqa: E402


def test_input_untouched_and_every_string_place_scrubbed(engine):
    scrubber, _ = make(engine)
    event = ev({"note": "mail ann.lee@example.org", "n": 3, "flag": True, "none": None},
               prediction=["ok", ["call 212-736-5001"]], error="failed for 10.2.3.4",
               tags={"contact": "ann.lee@example.org"})
    label = {"type": "label", "model": "m", "label": "bob@example.com", "tags": {}}
    before = json.dumps([event, label])
    out, out_label = scrubber.scrub_batch([event, label])
    assert json.dumps([event, label]) == before
    assert out["features"] == {"note": "mail <EMAIL_ADDRESS>", "n": 3, "flag": True, "none": None}
    assert out["prediction"] == ["ok", ["call <PHONE_NUMBER>"]]
    assert out["error"] == "failed for <IP_ADDRESS>"
    assert out["tags"] == {"contact": "<EMAIL_ADDRESS>"}
    assert out_label["label"] == "<EMAIL_ADDRESS>"


def test_class_names_of_a_score_mapping_are_scrubbed_without_losing_scores(engine):
    scrubber, _ = make(engine)
    out = scrubber.scrub_batch([ev(prediction={"ann@example.org": 0.6, "bob@example.org": 0.3, "spam": 0.1})])[0]
    assert out["prediction"] == {"<EMAIL_ADDRESS>": 0.6, "<EMAIL_ADDRESS>#2": 0.3, "spam": 0.1}


def test_field_policies_drop_hash_keep_globs_and_per_model(engine):
    cfg = ScrubConfig.from_mapping({
        "entities": list(TEST_ENTITIES),
        "fields": {"tags.user_id": "hash", "features.raw_*": "drop"},
        "models": {"fraud": {"fields": {"features.email": "keep", "features.card": "hash"},
                             "default_policy": "keep"}},
    }, hash_key=KEY)
    registry = CollectorRegistry()
    scrubber = Scrubber(cfg, registry=registry, engine=engine)
    events = [
        ev({"email": "ann@example.org", "raw_text": "x", "card": 4111111111111111, "n": 2.5},
           tags={"user_id": "u-1"}),
        {**ev({"email": "ann@example.org", "raw_text": "x", "card": 4111111111111111, "other": "ann@example.org"}),
         "model": "fraud"},
    ]
    default, fraud = scrubber.scrub_batch(events)
    assert default["features"] == {"email": "<EMAIL_ADDRESS>", "card": 4111111111111111, "n": 2.5}
    assert default["tags"] == {"user_id": hash_value(KEY, "u-1")}
    assert fraud["features"] == {"email": "ann@example.org", "card": hash_value(KEY, "4111111111111111"),
                                 "other": "ann@example.org"}
    assert registry.get_sample_value("driftline_pii_policy_values_total", {"policy": "drop"}) == 2


def test_hashes_stable_across_instances_with_same_key_and_differ_with_another(engine, nlp):
    cfg = ScrubConfig(fields={"features.user": "hash"}, hash_key=KEY)
    other_engine = build_engine(cfg, nlp=nlp)  # a "restarted" collector: new engine, new cache
    a = Scrubber(cfg, engine=engine).scrub_batch([ev({"user": "ann@example.org"})])[0]
    b = Scrubber(cfg, engine=other_engine).scrub_batch([ev({"user": "ann@example.org"})])[0]
    c = Scrubber(cfg.with_hash_key(b"another-key-0123456789"), engine=engine).scrub_batch(
        [ev({"user": "ann@example.org"})])[0]
    assert a["features"]["user"] == b["features"]["user"]
    assert a["features"]["user"].startswith("hmac:") and "ann" not in a["features"]["user"]
    assert c["features"]["user"] != a["features"]["user"]


def test_internal_error_masks_the_whole_event_and_never_raises(engine, monkeypatch):
    scrubber, registry = make(engine)
    monkeypatch.setattr(scrubber, "_policy", lambda *a: 1 / 0)
    out = scrubber.scrub_batch([ev({"a": "ann@example.org", "n": 1}, tags={"t": "x"},
                                   prediction={"ann": 1.0})])[0]
    assert out["features"] == {"a": "<REDACTED>", "n": 1}
    assert out["tags"] == {"t": "<REDACTED>"} and out["prediction"] == {"<REDACTED>": 1.0}
    assert registry.get_sample_value("driftline_pii_fail_closed_total", {"reason": "internal"}) == 1
    assert scrubber.scrub_batch(["not an event"]) == [{}]  # garbage in: nothing stored raw, no raise


def test_oversized_text_is_truncated_before_analysis_and_tail_never_stored(engine):
    scrubber, registry = make(engine, max_text_chars=200)
    text = "x " * 150 + " write to tail.secret@example.org"
    out = scrubber.scrub_batch([ev({"a": text})])[0]["features"]["a"]
    assert "tail.secret" not in out and out.endswith("[truncated 133 chars]")
    assert registry.get_sample_value("driftline_pii_truncated_total") == 1


def test_cache_hits_and_keys_are_keyed_hashes(engine):
    scrubber, registry = make(engine, cache_size=10)
    batch = [ev({"plan": "gold", "note": "call 212-736-5001"}) for _ in range(5)]
    scrubber.scrub_batch(batch)
    scrubber.scrub_batch(batch)
    assert registry.get_sample_value("driftline_pii_cache_misses_total") == 10  # within a batch: deduplicated
    assert registry.get_sample_value("driftline_pii_cache_hits_total") == 10
    keys = list(scrubber._cache._data)
    assert len(keys) == 2 and all(isinstance(k, bytes) and len(k) == 32 for k in keys)
    assert not any(b"gold" in k or b"212" in k for k in keys)
    # Each occurrence counts, cached or not.
    assert registry.get_sample_value("driftline_pii_values_scrubbed_total", {"entity": "PHONE_NUMBER"}) == 10
