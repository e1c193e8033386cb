"""The Presidio engine built offline (pii/offline.py): a missing entity or model fails at start,
nothing touches the network."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("presidio_analyzer")

from driftline.collector.pii.config import ScrubConfig  # noqa: E402
from driftline.collector.pii.offline import build_engine, load_spacy_model  # noqa: E402
from driftline.collector.pii.scrub import Scrubber  # noqa: E402
from driftline.sdk.errors import ConfigError  # noqa: E402

from .scrub_kit import ev  # noqa: E402


def test_unknown_entity_and_missing_model_fail_at_start(nlp):
    with pytest.raises(ConfigError, match="no recognizer for NO_SUCH_ENTITY"):
        build_engine(ScrubConfig(entities=("PERSON", "NO_SUCH_ENTITY")), nlp=nlp)
    with pytest.raises(ConfigError, match="pii.spacy_model"):
        load_spacy_model("en_core_web_nonexistent_model")


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
