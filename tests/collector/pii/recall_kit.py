"""The committed recall corpus (``recall_corpus.json``): 306 support messages in 9 locales made
with Faker by ``bench/bench_pii_recall.py --messages-per-locale 34 --write-fixture ...`` (seed 15),
so the tests need no Faker. Each record: ``locale``, ``text``, ``entities`` ([type, value] pairs
that must not survive a scrub) and ``negatives`` (values that must)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["load_recall_corpus", "name_caught", "pattern_values", "stratified_sample"]

CORPUS = Path(__file__).with_name("recall_corpus.json")
_WORD = re.compile(r"[^\W\d_][^\W\d_'\-]*")
# Honorifics and particles Faker puts around names (as bench/bench_pii_recall.py counts them).
_TITLES = frozenset("""mr mrs ms miss dr prof md dds phd dvm jr sr ii iii iv v herr frau dipl ing univ
mba msc bsc ba ma mag dott sig sra srta dña don dª drs ir mevr dhr eng la le van der den de
da do dos das di del y e und""".split())


def load_recall_corpus() -> list[dict[str, Any]]:
    return json.loads(CORPUS.read_text(encoding="utf-8"))


def stratified_sample(corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Locale by locale, in corpus order, each record that plants an entity type not yet taken in
    its locale: every (locale, entity type) pair of the corpus, in a tenth of its records (36 of
    306). The end-to-end test sends this through the whole pipeline; the unit tests (and
    bench/bench_pii_recall.py) measure recall on the whole corpus."""
    taken: set[tuple[str, str]] = set()
    sample = []
    for r in corpus:
        pairs = {(r["locale"], e) for e, _ in r["entities"]}
        if pairs - taken:
            sample.append(r)
            taken |= pairs
    return sample


def pattern_values(corpus: list[dict[str, Any]]) -> list[str]:
    """Every planted value but person names (those NER finds, not a shape)."""
    return sorted({v for r in corpus for e, v in r["entities"] if e != "PERSON"})


def name_caught(name: str, output: str) -> bool:
    """True when none of the name's words (titles aside) is left in ``output``."""
    words = [w for w in _WORD.findall(name) if len(w) >= 3 and w.lower().rstrip(".") not in _TITLES]
    return not any(re.search(rf"(?<![^\W\d_]){re.escape(w)}(?![^\W\d_])", output) for w in words)
