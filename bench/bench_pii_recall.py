"""PII recall on a corpus nobody hand-picked: Faker values in 9 locales, scrubbed as the collector does.

    python bench/bench_pii_recall.py                      # ~1-2 minutes on 2 cores
    python bench/bench_pii_recall.py --messages-per-locale 40
    python bench/bench_pii_recall.py --write-fixture tests/collector/pii/recall_corpus.json

The corpus (bench/pii_corpus_faker.py) is generated with Faker (a bench-only dependency) in its
own venv under ``--venv-dir`` (created on first use, pinned version; network once). Support
messages from per-language templates (en, de, fr, es, it, nl, pt) carry names, phones, emails,
cards (bare, spaced, dashed), IBANs (bare, grouped), IPv4/IPv6, MACs, dates of birth next to the
language's "born" word and the locale's national id; the same values also come as bare field
values (``features.phone``, ``features.ssn``...). Hard negatives (order numbers, amounts,
timestamps, UUIDs, versions, product codes) sit in the same messages and fields and must survive.

Each record is scrubbed by :class:`~driftline.collector.pii.scrub.Scrubber` with the default
settings (``pattern_mode: shape``) and, for comparison, ``pattern_mode: validated`` (the behaviour
before issue 15). A value counts as caught when it no longer appears in the output; a person
name when none of its words (titles such as Dr/Mr/Prof. aside) remains. Targets: 100 % on
pattern entities, >= 95 % of person names in English text, <= 2 % of hard negatives masked.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from prometheus_client import CollectorRegistry

from driftline.collector.pii.config import ScrubConfig
from driftline.collector.pii.offline import build_engine
from driftline.collector.pii.scrub import Scrubber

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FAKER_PIN = ("faker==40.54.0",)
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pt_PT")
_WORD = re.compile(r"[^\W\d_][^\W\d_'\-]*")
# Honorifics and degrees Faker puts around names; they are not the identifying part.
_TITLES = frozenset("""mr mrs ms miss dr prof md dds phd dvm jr sr ii iii iv v herr frau dipl ing univ
mba msc bsc ba ma mag dott sig sra srta dña don dª dr. drs ir mevr dhr sra. eng la le van der den de
da do dos das di del y e und""".split())


def ensure_faker(venv_dir: Path) -> Path:
    """The Faker venv's interpreter (created, or updated when the pin changed)."""
    venv = venv_dir / "faker"
    py = venv / "bin" / "python"
    stamp = venv / "bench-pins.txt"
    pins = "\n".join(FAKER_PIN) + "\n"
    if py.exists() and stamp.exists() and stamp.read_text() == pins:
        return py
    print(f"[setup] creating {venv} with {' '.join(FAKER_PIN)} (network, once)", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *FAKER_PIN], check=True)
    stamp.write_text(pins)
    return py


def generate(py: Path, messages_per_locale: int, seed: int, fields: bool = True) -> list[dict]:
    cmd = [str(py), str(HERE / "pii_corpus_faker.py"), "--messages-per-locale", str(messages_per_locale),
           "--seed", str(seed)] + ([] if fields else ["--no-fields"])
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def name_words(name: str) -> list[str]:
    return [w for w in _WORD.findall(name) if len(w) >= 3 and w.lower().rstrip(".") not in _TITLES]


def scrub_records(scrubber: Scrubber, records: list[dict], batch: int = 250) -> list[str]:
    out: list[str] = []
    for i in range(0, len(records), batch):
        chunk = records[i:i + batch]
        events = [{"schema_version": 1, "type": "prediction", "model": "recall",
                   "features": {r["field"]: r["text"]}} for r in chunk]
        for r, e in zip(chunk, scrubber.scrub_batch(events)):
            out.append(e["features"].get(r["field"], ""))
    return out


def score(records: list[dict], outputs: list[str]) -> dict:
    """Counts per (entity, locale) [caught, total], names per (kind, locale), negatives, misses."""
    found: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    names: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    neg = [0, 0]
    misses: list[tuple[str, str, str]] = []
    masked_negs: list[str] = []
    for r, out in zip(records, outputs):
        for entity, value in r["entities"]:
            if entity == "PERSON":
                words = name_words(value)
                left = [w for w in words if re.search(rf"(?<![^\W\d_]){re.escape(w)}(?![^\W\d_])", out)]
                cell = names[(r["kind"], r["locale"])]
                cell[1] += 1
                cell[0] += not left
                continue
            cell = found[(entity, r["locale"])]
            cell[1] += 1
            if value in out:
                misses.append((entity, r["locale"], value))
            else:
                cell[0] += 1
        for value in r["negatives"]:
            neg[1] += 1
            if value not in out:
                neg[0] += 1
                masked_negs.append(value)
    return {"found": found, "names": names, "neg": neg, "misses": misses, "masked_negs": masked_negs}


def _pct(c: list[int]) -> str:
    return f"{100 * c[0] / c[1]:.0f}" if c[1] else "–"


def table(result: dict) -> str:
    found, names = result["found"], result["names"]
    locales = [loc for loc in LOCALES if any(k[1] == loc for k in found)]
    head = "| entity | " + " | ".join(locales) + " | all |"
    rows = [head, "|" + "---|" * (len(locales) + 2)]
    for entity in sorted({k[0] for k in found}):
        total = [sum(found[(entity, loc)][i] for loc in locales if (entity, loc) in found) for i in (0, 1)]
        rows.append(f"| {entity} | " + " | ".join(_pct(found[(entity, loc)]) if (entity, loc) in found else "–"
                                                  for loc in locales) + f" | {_pct(total)} ({total[0]}/{total[1]}) |")
    for kind in ("text", "field"):
        cells = {loc: names[(kind, loc)] for loc in locales if (kind, loc) in names}
        total = [sum(c[i] for c in cells.values()) for i in (0, 1)]
        rows.append(f"| PERSON ({kind}) | " + " | ".join(_pct(cells[loc]) if loc in cells else "–" for loc in locales)
                    + f" | {_pct(total)} ({total[0]}/{total[1]}) |")
    return "\n".join(rows)


def summary(result: dict) -> dict[str, float]:
    pattern = [sum(c[i] for c in result["found"].values()) for i in (0, 1)]
    en = [sum(result["names"][(k, loc)][i] for k in ("text",) for loc in ("en_US", "en_GB")
              if (k, loc) in result["names"]) for i in (0, 1)]
    other = [sum(c[i] for (k, loc), c in result["names"].items() if k == "text" and not loc.startswith("en"))
             for i in (0, 1)]
    neg = result["neg"]
    return {"pattern_recall": pattern[0] / max(1, pattern[1]), "names_en_text": en[0] / max(1, en[1]),
            "names_other_text": other[0] / max(1, other[1]), "negatives_masked": neg[0] / max(1, neg[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages-per-locale", type=int, default=150)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--venv-dir", type=Path, default=ROOT / ".cache" / "bench-venvs")
    ap.add_argument("--write-fixture", type=Path, default=None,
                    help="write a messages-only corpus (--messages-per-locale each) here and exit")
    args = ap.parse_args()
    py = ensure_faker(args.venv_dir)
    if args.write_fixture:
        records = generate(py, args.messages_per_locale, args.seed, fields=False)
        lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
        args.write_fixture.write_text(f"[\n{lines}\n]\n")
        print(f"wrote {len(records)} messages to {args.write_fixture}")
        return
    records = generate(py, args.messages_per_locale, args.seed)
    n_text = sum(r["kind"] == "text" for r in records)
    n_values = sum(len(r["entities"]) for r in records)
    n_neg = sum(len(r["negatives"]) for r in records)
    print(f"corpus: {len(records)} records ({n_text} messages, {len(records) - n_text} bare fields), "
          f"{n_values} PII values, {n_neg} hard negatives, {len(LOCALES)} locales, seed {args.seed}")
    config = ScrubConfig(time_budget_ms=10_000)  # recall, not the budget, is measured here
    engine = build_engine(config)
    for mode in ("shape", "validated"):
        scrubber = Scrubber(ScrubConfig(time_budget_ms=10_000, pattern_mode=mode),
                            registry=CollectorRegistry(), engine=engine)
        start = time.perf_counter()
        outputs = scrub_records(scrubber, records)
        elapsed = time.perf_counter() - start
        result = score(records, outputs)
        s = summary(result)
        print(f"\n## pattern_mode: {mode} ({len(records) / elapsed:,.0f} records/s)\n")
        print("recall per entity type and locale (% of values caught):\n")
        print(table(result))
        print(f"\npattern entities: {100 * s['pattern_recall']:.2f} % (target 100 %); person names in English "
              f"text: {100 * s['names_en_text']:.1f} % (target >= 95 %), other languages: "
              f"{100 * s['names_other_text']:.1f} %; hard negatives masked: {100 * s['negatives_masked']:.2f} % "
              f"({result['neg'][0]}/{result['neg'][1]}, target <= 2 %)")
        if result["misses"]:
            print(f"pattern values missed ({len(result['misses'])}), first 15: "
                  + "; ".join(f"{e}/{loc}: {v!r}" for e, loc, v in result["misses"][:15]))
        if result["masked_negs"]:
            print("hard negatives masked, first 10: " + "; ".join(repr(v) for v in result["masked_negs"][:10]))


if __name__ == "__main__":
    main()
