"""Helpers of the PII tests: fake clock, misbehaving recognizers, a scrubber on a shared engine."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from presidio_analyzer import EntityRecognizer

from driftline.collector.pii.config import DEFAULT_ENTITIES, ScrubConfig
from driftline.collector.pii.scrub import Scrubber

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


def make(engine, registry=None, **kw) -> tuple[Scrubber, CollectorRegistry]:
    registry = registry or CollectorRegistry()
    kw.setdefault("entities", TEST_ENTITIES)
    return Scrubber(ScrubConfig(**kw), registry=registry, engine=engine), registry


def ev(features=None, **extra):
    return {"schema_version": 1, "type": "prediction", "model": "m", "features": features or {}, **extra}
