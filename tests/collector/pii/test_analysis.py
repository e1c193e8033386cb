"""The analysis of a batch's values (pii/analysis.py): what the corpus plants is found, a recognizer
that raises, a value past its budget or NER that raises fails closed, field names give context."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("presidio_analyzer")

from .pii_corpus import pii_corpus  # noqa: E402
from .scrub_kit import ev, make  # noqa: E402


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


def test_field_name_is_context_for_weak_patterns(engine):
    scrubber, _ = make(engine)
    out = scrubber.scrub_batch([ev({"ssn": "536228714", "order_no": "536228714"})])[0]
    assert out["features"] == {"ssn": "<US_SSN>", "order_no": "536228714"}


def _word(i: int) -> str:
    """A distinct made-up word per i, letters only (so the NER gate runs on it)."""
    out = ""
    for _ in range(6):
        i, r = divmod(i, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
    return "Q" + out


def test_new_words_leave_the_spacy_vocabulary_after_each_batch(engine):
    # Free text brings new words without end; spaCy used to keep each one for the life of the
    # process (the collector's memory grew with every unique value).
    scrubber, _ = make(engine)
    strings = engine.nlp.vocab.strings
    scrubber.scrub_batch([ev({"note": "Warm up with Anna, mail ann@example.org"})])
    before = len(strings)
    n = 0
    for _ in range(10):
        batch = []
        for _ in range(50):
            words = [_word(n + k) for k in range(5)]
            n += 5
            batch.append(ev({"note": f"{words[0]} {words[1]} asked {words[2]} about {words[3]} in {words[4]}, "
                                     f"mail {words[0].lower()}@example.org"}))
        out = scrubber.scrub_batch(batch)
        assert all("@example.org" not in o["features"]["note"] for o in out)  # analysed, masked
    assert n == 2500
    assert len(strings) <= before, f"{len(strings) - before} strings kept of {n} new words"
    assert _word(0) not in strings and _word(0) not in engine.nlp.vocab
