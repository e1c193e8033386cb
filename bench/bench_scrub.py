"""Scrub throughput (events/s) against calling ``AnalyzerEngine.analyze`` on every value.

    python bench/bench_scrub.py            # ~1-2 minutes on 2 cores
    python bench/bench_scrub.py --quick    # smaller samples

(a) tabular events: two categorical string fields (30 countries x 5 plans) + 3 numbers;
(b) events with one 200-character free-text field, every text distinct (no cache help).
Both also run with ``pattern_mode: validated`` (Presidio's validation decides, as before issue 15)
in the same run: the shapes must keep (a) within 10 % of it (ratio >= 0.9, >= 100k events/s).

The baseline is Presidio used the plain way, measured in the same run: a full spaCy pipeline
(same model) and ``AnalyzerEngine.analyze(value, language="en", entities=<same>,
score_threshold=<same>)`` called once per string value. Targets: (a) >= 20,000 events/s,
(b) >= 5x the baseline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from prometheus_client import CollectorRegistry

from driftline.collector.pii.config import ScrubConfig
from driftline.collector.pii.offline import OfflineEmailRecognizer
from driftline.collector.pii.scrub import Scrubber

COUNTRIES = ["DE", "FR", "US", "GB", "ES", "IT", "NL", "BE", "PL", "SE", "NO", "DK", "FI", "IE", "PT",
             "AT", "CH", "CZ", "HU", "RO", "GR", "BG", "HR", "SK", "SI", "LT", "LV", "EE", "LU", "MT"]
PLANS = ["free", "basic", "pro", "team", "enterprise"]
FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Diego", "Hannah", "Ravi", "Sophie", "Liam"]
LAST = ["Gonzalez", "Thompson", "Khan", "Zhang", "Petrova", "Fernandez", "Schmidt", "Patel"]
TEMPLATES = [
    "Hello, I ordered the {p} on {d} and it arrived broken. {n} from your team promised a refund but "
    "nothing happened since. Order {o}. Please call me back on {ph}, thanks a lot for your help!!",
    "my account was charged twice for the {p} subscription this month. i already wrote to support "
    "twice and got no answer. order number {o}, card ending {c4}. please fix this quickly, regards",
    "Dear team, {n} here. The {p} stopped syncing after the last update; restarting does not help. "
    "Logs show error {o} at startup. You can reach me at {em} any time this week. Best wishes",
    "the app keeps logging me out every few minutes on my phone and tablet. tried reinstalling, "
    "clearing cache, everything. ticket {o}. this is really frustrating, i pay for the {p} plan!!",
]


def event(features: dict) -> dict:
    return {"schema_version": 1, "type": "prediction", "model": "bench", "features": features,
            "prediction": 0.5, "tags": {}}


def tabular(n: int, rng: random.Random) -> list[dict]:
    return [event({"country": rng.choice(COUNTRIES), "plan": rng.choice(PLANS), "age": rng.randint(18, 90),
                   "spend": rng.random() * 100, "tenure": rng.randint(0, 60)}) for _ in range(n)]


def free_text(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        text = TEMPLATES[i % len(TEMPLATES)].format(
            p=rng.choice(["blender", "router", "headphones", "camera"]), d=f"March {rng.randint(1, 28)}",
            n=name, o=rng.randint(100000, 999999), ph=f"(212) {rng.randint(200, 989)}-{rng.randint(1000, 9999)}",
            c4=rng.randint(1000, 9999), em=f"{name.split()[0].lower()}{i}@example.org")
        out.append(event({"message": (text + " " * 200)[:200]}))
    return out


def baseline_analyzer(config: ScrubConfig):
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": config.spacy_model}])
    nlp_engine.nlp = {"en": spacy.load(config.spacy_model)}  # full pipeline, as Presidio loads it
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")  # same recognizer, minus the network fetch
    registry.add_recognizer(OfflineEmailRecognizer())
    from driftline.collector.pii.offline import StreetAddressRecognizer

    registry.add_recognizer(StreetAddressRecognizer())
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine)


def per_value_rate(analyzer, config: ScrubConfig, events: list[dict]) -> float:
    start = time.perf_counter()
    for ev in events:
        for value in ev["features"].values():
            if isinstance(value, str):
                analyzer.analyze(value, language="en", entities=list(config.entities),
                                 score_threshold=config.score_threshold)
    return len(events) / (time.perf_counter() - start)


def scrub_rate(scrubber: Scrubber, events: list[dict], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        scrubber.scrub_batch(events[i:i + batch])
    return len(events) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=500, help="events per scrub_batch call (collector batch)")
    args = ap.parse_args()
    rng = random.Random(1)
    n_tab, n_tab_base, n_txt, n_txt_base = (20_000, 300, 1_000, 100) if args.quick else (100_000, 1_000, 3_000, 300)
    config = ScrubConfig()
    print(f"building engines (spaCy model {config.spacy_model}) ...")
    base = baseline_analyzer(config)
    base.analyze("warm up Maria at 212-736-5001", language="en")

    print("\n(a) tabular: 2 categorical string fields + 3 numbers per event")
    reg = CollectorRegistry()
    scrubber = Scrubber(config, registry=reg)
    tab = tabular(n_tab, rng)
    rate_a = scrub_rate(scrubber, tab, args.batch)
    hits = reg.get_sample_value("driftline_pii_cache_hits_total") or 0.0
    misses = reg.get_sample_value("driftline_pii_cache_misses_total") or 0.0
    base_a = per_value_rate(base, config, tab[:n_tab_base])
    print(f"  scrubber : {rate_a:12,.0f} events/s  ({n_tab:,} events, cache hit rate {hits / (hits + misses):.4f})")
    print(f"  baseline : {base_a:12,.0f} events/s  (analyze per value, {n_tab_base:,} events)")
    print(f"  ratio    : {rate_a / base_a:12.1f} x   target: >= 20,000 events/s -> "
          f"{'MET' if rate_a >= 20_000 else 'NOT MET'}")

    print("\n(a') the same events, pattern_mode shape (default) vs validated (Presidio's validation: the "
          "behaviour before issue 15), fresh caches, alternating runs, median of 3")
    rates: dict[str, list[float]] = {"shape": [], "validated": []}
    for _ in range(3):
        for mode in ("validated", "shape"):
            s = Scrubber(ScrubConfig(pattern_mode=mode), registry=CollectorRegistry(), engine=scrubber.engine)
            rates[mode].append(scrub_rate(s, tab, args.batch))
    shape_a, valid_a = statistics.median(rates["shape"]), statistics.median(rates["validated"])
    print(f"  shape    : {shape_a:12,.0f} events/s")
    print(f"  validated: {valid_a:12,.0f} events/s")
    print(f"  ratio    : {shape_a / valid_a:12.3f}     target: >= 0.90 and >= 100,000 events/s -> "
          f"{'MET' if shape_a / valid_a >= 0.9 and shape_a >= 100_000 else 'NOT MET'}")

    print("\n(b) one 200-character free-text field per event, all distinct")
    # The machine is shared: baseline and scrubber run in alternating rounds so that load from
    # other processes hits both alike. Each round: a slice for the baseline, a batch per variant.
    txt = free_text(n_txt, rng)
    gated = Scrubber(config, registry=CollectorRegistry(), engine=scrubber.engine)
    ungated = Scrubber(ScrubConfig(ner_gate=False), registry=CollectorRegistry(), engine=scrubber.engine)
    validated = Scrubber(ScrubConfig(pattern_mode="validated"), registry=CollectorRegistry(), engine=scrubber.engine)
    rounds = max(1, n_txt // args.batch)
    per_round_base = max(1, n_txt_base // rounds)
    t_base = t_on = t_off = t_val = 0.0
    n_base = 0
    for r in range(rounds):
        chunk = txt[r * args.batch:(r + 1) * args.batch]
        start = time.perf_counter()
        per_value_rate(base, config, chunk[:per_round_base])
        t_base += time.perf_counter() - start
        n_base += len(chunk[:per_round_base])
        t_on += len(chunk) / scrub_rate(gated, chunk, args.batch)
        t_off += len(chunk) / scrub_rate(ungated, chunk, args.batch)
        t_val += len(chunk) / scrub_rate(validated, chunk, args.batch)
    n_scrub = rounds * args.batch
    base_b, on, off, val = n_base / t_base, n_scrub / t_on, n_scrub / t_off, n_scrub / t_val
    print(f"  scrubber : {on:12,.0f} events/s  (ner_gate on, default; {n_scrub:,} events)")
    print(f"  scrubber : {off:12,.0f} events/s  (ner_gate off: NER on every text)")
    print(f"  scrubber : {val:12,.0f} events/s  (pattern_mode validated; shape/validated = {on / val:.2f})")
    print(f"  baseline : {base_b:12,.0f} events/s  (analyze per value, {n_base:,} events, "
          f"{1000 / base_b:.1f} ms/value)")
    print(f"  ratio    : {on / base_b:12.1f} x (gate on), {off / base_b:.1f} x (gate off)   "
          f"target: >= 5x -> {'MET' if on / base_b >= 5 else 'NOT MET'}")

if __name__ == "__main__":
    main()
