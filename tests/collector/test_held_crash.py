"""Detector state unreadable while inserts work, then the collector SIGKILLed: the events the
detectors held were stored and *not acknowledged*, so the next collector reads them again and its
detectors observe every one of them. Real processes (``driftline collector``), the real broker
and store; the fault is the ``detector_state`` table renamed away (reads fail, inserts work), as
ClickHouse's old ``Code: 62`` did to state reads at 1,000 models (issue 17)."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.collector.test_crash import counts, create_topics, produce
from tests.conftest import unique_topics, wait_for

pytestmark = pytest.mark.integration

WINDOW = 100


def _samples(port: int) -> dict[tuple[str, str], float]:
    """(metric, model) -> value of the detector metrics this test reads; {} while it is not up."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("driftline_detector_events_total", "driftline_detector_events_held",
                          "driftline_detector_events_unobserved_total"):
                key = (s.name, s.labels.get("model", ""))
                out[key] = out.get(key, 0.0) + s.value
    return out


def test_events_held_by_the_detectors_survive_a_sigkill_and_are_observed_after_the_restart(
        kafka_bootstrap: str, ch_client: Any, collector_factory: Any, tmp_path: Path) -> None:
    topics = unique_topics()
    tag = uuid.uuid4().hex[:6]
    a, b = f"held-a-{tag}", f"held-b-{tag}"
    create_topics(kafka_bootstrap, topics)
    detectors = tmp_path / "detectors.yaml"
    detectors.write_text("---\n".join(
        f"model: {m}\nwindow: {{kind: count, size: {WINDOW}}}\nmin_samples: 50\n"
        f"reference: {{source: first_events, first_events: {WINDOW * 2}}}\n" for m in (a, b)))
    group = f"g-held-{tag}"
    env = {"DRIFTLINE_DETECTORS_CONFIG": str(detectors)}
    first = collector_factory(topics, group_id=group, extra_env=env)
    port = int(first.env["DRIFTLINE_METRICS_PORT"])

    produce(kafka_bootstrap, topics.predictions, a, 300)
    wait_for(lambda: _samples(port).get(("driftline_detector_events_total", a)) == 300, timeout_s=90)

    table, away = "driftline.detector_state", f"driftline.detector_state_away_{tag}"
    ch_client.command(f"RENAME TABLE {table} TO {away}")
    try:
        produce(kafka_bootstrap, topics.predictions, b, 400)  # a new model: its saved state cannot be read
        produce(kafka_bootstrap, topics.predictions, a, 100)
        wait_for(lambda: counts(ch_client, a)[0] == 400 and counts(ch_client, b)[0] == 400, timeout_s=90)
        # The first load of b's state gives up after the state's 30 s of retries: then the chunk is held.
        wait_for(lambda: _samples(port).get(("driftline_detector_events_held", "")) == 500, timeout_s=120)
        seen_first = _samples(port)
        first.kill()
    finally:
        ch_client.command(f"RENAME TABLE {away} TO {table}")
    assert seen_first.get(("driftline_detector_events_total", a)) == 300
    assert not seen_first.get(("driftline_detector_events_total", b))

    second = collector_factory(topics, group_id=group, extra_env=env)
    port2 = int(second.env["DRIFTLINE_METRICS_PORT"])

    def observed() -> dict[tuple[str, str], float]:
        s = _samples(port2)
        return s if s.get(("driftline_detector_events_total", b)) == 400 else {}

    seen = wait_for(observed, timeout_s=120)
    assert seen.get(("driftline_detector_events_total", a)) == 100, "a's first 300 were observed before the kill"
    assert seen.get(("driftline_detector_events_held", "")) == 0
    assert not seen.get(("driftline_detector_events_unobserved_total", ""))
    assert counts(ch_client, a) == (400, 400) and counts(ch_client, b) == (400, 400), "stored once"
    drift = ch_client.query("SELECT model, count() FROM driftline.drift_metrics WHERE model IN (%(a)s, %(b)s) "
                            "GROUP BY model", parameters={"a": a, "b": b}).result_rows
    assert {m for m, n in drift if n} == {a, b}, "both models' windows closed and were written"
    assert "detector failed on a batch" not in first.log() + second.log()
