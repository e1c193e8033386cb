"""Analysis of the values a batch has not seen before: pattern fast path, gated NER, Presidio.

:class:`~driftline.collector.pii.scrub.Scrubber` makes one :class:`Job` per distinct value that
missed its cache and hands the batch to :meth:`Analyzer.analyse`, which fills each job's
``output`` (the anonymized text) and ``found`` (entity types), or marks it ``failed``
(``"error"`` or ``"budget"``); the scrubber then masks failed values, counts and caches.

Speed, after the cache:

0. **Shapes** (``pattern_mode: shape``, the default): compiled regexes find every value shaped
   like a pattern entity, validated or not (:mod:`~driftline.collector.pii.shapes`); Presidio's
   recognizers that the shapes supersede are not run. Shape spans win over overlapping Presidio
   spans (the two are merged into one masked span).
1. **Pattern fast path.** Cheap character statistics decide which recognizers can possibly match
   (no ``@``: no email; fewer than 7 digits: no phone, card, SSN...), so most values run few or
   no recognizers, and the costly phone matcher only runs on digit-rich text.
2. **Batched, gated NER.** spaCy runs once per batch via ``nlp.pipe`` with only tok2vec + ner,
   and (``ner_gate``) only over sentences holding a capitalised, non-trivial word.

Memory: spaCy adds every word it has not seen to its vocabulary (a lexeme and its strings) for
the life of the process, so a collector scrubbing free text grew without bound (measured:
160,000 lexemes and +66 MiB after 20,000 unique values). A batch is analysed inside
``nlp.memory_zone()`` (spaCy 3.8+), which drops the words the batch added when it ends; nothing
spaCy made (docs, spans, tokens) leaves :meth:`Analyzer.analyse`, only plain strings and offsets.

Each value's analysis has ``time_budget_ms`` (the engine's deadline, checked by every recognizer);
NER, which cannot be interrupted per value, has the batch's summed budget.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Sequence

from driftline.collector.pii.config import NER_ENTITIES, ScrubConfig
from driftline.collector.pii.offline import BudgetExceeded, PiiEngine
from driftline.collector.pii.shapes import SUPERSEDED, ShapeMatch, find_shapes

__all__ = ["Analyzer", "Job"]

_NOT_DIGITS = str.maketrans("", "", "0123456789")
_ALPHA = re.compile(r"[^\W\d_]{2,}")
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")
_WORD = re.compile(r"[^\W\d_][^\W_]*")
_GREETINGS = frozenset({"hi", "hello", "hey", "dear", "thanks", "thank", "please", "yes", "no", "ok",
                        "okay", "sorry", "regards", "best", "cheers"})
# Which character statistics make an entity possible at all: (digits, has '@', has '.' or ':').
_TRIGGERS: dict[str, Callable[[int, bool, bool], bool]] = {
    "EMAIL_ADDRESS": lambda d, at, dot: at,
    "PHONE_NUMBER": lambda d, at, dot: d >= 7,
    "CREDIT_CARD": lambda d, at, dot: d >= 12,
    "IBAN_CODE": lambda d, at, dot: d >= 8,
    "IP_ADDRESS": lambda d, at, dot: d >= 1 and dot,
    "US_SSN": lambda d, at, dot: d >= 9,
    "US_ITIN": lambda d, at, dot: d >= 9,
    "US_BANK_NUMBER": lambda d, at, dot: d >= 8,
    "US_PASSPORT": lambda d, at, dot: d >= 8,
    "STREET_ADDRESS": lambda d, at, dot: d >= 1,
    "URL": lambda d, at, dot: dot,
    "CRYPTO": lambda d, at, dot: d >= 1,
    "DE_TAX_ID": lambda d, at, dot: d >= 11,
    "DE_ID_CARD": lambda d, at, dot: d >= 1,
    "ES_NIF": lambda d, at, dot: d >= 7,
    "ES_NIE": lambda d, at, dot: d >= 7,
    "UK_NINO": lambda d, at, dot: d >= 6,
}
_GLUE = frozenset("-_#/")
_TOKEN = re.compile(r"\S+")
_ALWAYS = lambda d, at, dot: True  # noqa: E731  unknown/custom entities always run


class Job:
    """One distinct value to analyse in this batch; doubles as its placeholder in events."""

    __slots__ = ("value", "text", "truncated", "ctx", "entities", "threshold", "cache_key", "uses",
                 "ner", "spans", "shapes", "output", "found", "failed")

    def __init__(self, value: str, ctx: list[str], entities: tuple[str, ...], threshold: float,
                 cache_key: bytes, max_chars: int) -> None:
        self.value, self.ctx, self.entities, self.threshold = value, ctx, entities, threshold
        self.cache_key = cache_key
        self.truncated = len(value) > max_chars
        self.text = value[:max_chars] if self.truncated else value
        self.uses = 0
        self.ner = False
        self.spans: list[tuple[int, int, str]] = []
        self.shapes: list[ShapeMatch] = []
        self.output: str = ""
        self.found: tuple[str, ...] = ()
        self.failed: str | None = None


class Analyzer:
    """Runs the recognizers a batch's jobs need, NER once for the batch. Not thread-safe.

    Parameters
    ----------
    config: the validated :class:`ScrubConfig` (language, budget, NER gate and batch size).
    engine: the :class:`PiiEngine` (spaCy pipeline, Presidio analyzer and anonymizer).
    clock: monotonic seconds, for the time budget.
    """

    def __init__(self, config: ScrubConfig, engine: PiiEngine, clock: Callable[[], float]) -> None:
        self.config = config
        self.engine = engine
        self._clock = clock
        self._budget_s = config.time_budget_ms / 1000.0
        self._common = frozenset(engine.nlp.Defaults.stop_words) | _GREETINGS
        ner_conf = engine.nlp_engine.ner_model_configuration
        self._ner_map = dict(ner_conf.model_to_presidio_entity_mapping)
        self._ner_ignore = frozenset(ner_conf.labels_to_ignore)
        self._ner_score = ner_conf.default_score
        self._shapes = config.pattern_mode == "shape"
        # In shape mode the shapes replace these recognizers; entities no recognizer of Presidio
        # supports (FR_NIR, NL_BSN, DATE_OF_BIRTH...) are shape-only in both modes.
        skip = SUPERSEDED if self._shapes else frozenset()
        presidio = engine.presidio_entities or engine.supported_entities
        self._presidio = frozenset(e for e in engine.supported_entities if e in presidio and e not in skip)

    def analyse(self, jobs: list[Job]) -> None:
        """Analyse every job: fill ``output`` and ``found``, or set ``failed``. Never raises for a
        recognizer's or NER's error: the job fails instead."""
        zone = getattr(self.engine.nlp, "memory_zone", None)  # spaCy < 3.8 has none
        with zone() if zone is not None else contextlib.nullcontext():
            self._analyse_all(jobs)

    def _analyse_all(self, jobs: list[Job]) -> None:
        plans: dict[int, list[str]] = {}
        presidio = self._presidio
        for job in jobs:
            text = job.text
            digits = len(text) - len(text.translate(_NOT_DIGITS))
            at, dot = "@" in text, ("." in text or ":" in text)
            if digits or at or self._shapes:  # shapes without digits: emails, name fields
                try:
                    job.shapes = self._find_shapes(job)
                except Exception:
                    job.failed = "error"
                    continue
            run = [e for e in job.entities if e not in NER_ENTITIES and e in presidio
                   and _TRIGGERS.get(e, _ALWAYS)(digits, at, dot)]
            if any(e in NER_ENTITIES for e in job.entities) and _ALPHA.search(text):
                job.ner = True
                run += [e for e in job.entities if e in NER_ENTITIES]
            plans[id(job)] = run
        self._run_ner([j for j in jobs if j.ner and j.failed is None])
        for job in jobs:
            if job.failed is None:
                self._analyse(job, plans[id(job)])

    def _find_shapes(self, job: Job) -> list[ShapeMatch]:
        """Shape matches of the job's entities: all of them in ``shape`` mode; in ``validated``
        mode only those of entities no Presidio recognizer validates."""
        if self._shapes:
            return find_shapes(job.text, job.ctx, job.entities)
        shape_only = [e for e in job.entities if e not in self._presidio]
        return find_shapes(job.text, job.ctx, shape_only) if shape_only else []

    def _windows(self, text: str) -> list[tuple[int, int]]:
        """Spans of ``text`` worth running NER on (merged runs of candidate sentences)."""
        if not self.config.ner_gate:
            return [(0, len(text))]
        spans: list[tuple[int, int]] = []
        for sent in _SENTENCE.finditer(text):
            first = True
            for word in _WORD.finditer(sent.group()):
                w = word.group()
                if w[0].isupper() and w != "I" and not (first and w.lower() in self._common):
                    if spans and spans[-1][1] >= sent.start() - 1:
                        spans[-1] = (spans[-1][0], sent.end())
                    else:
                        spans.append((sent.start(), sent.end()))
                    break
                first = False
        return spans

    def _run_ner(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        texts: list[str] = []
        owners: list[tuple[Job, int]] = []
        for job in jobs:
            for start, end in self._windows(job.text):
                texts.append(job.text[start:end])
                owners.append((job, start))
        if not texts:
            return
        started = self._clock()
        try:
            docs = self.engine.nlp.pipe(texts, batch_size=self.config.ner_batch_size)
            for doc, (job, offset) in zip(docs, owners):
                job.spans.extend((e.start_char + offset, e.end_char + offset, e.label_) for e in doc.ents)
        except Exception:
            for job in jobs:
                job.failed = "error"
            return
        # nlp.pipe cannot be interrupted per value: a batch past its summed budget fails whole.
        if self._clock() - started > self._budget_s * len(jobs):
            for job in jobs:
                job.failed = "budget"

    def _artifacts(self, job: Job) -> Any:
        from presidio_analyzer.nlp_engine import NlpArtifacts

        doc = self.engine.nlp.make_doc(job.text)
        ents, scores = [], []
        for ner_start, ner_end, label in job.spans:
            label = self._ner_map.get(label, label)
            if label in self._ner_ignore:
                continue
            for start, end in _without_identifiers(job.text, ner_start, ner_end):
                span = doc.char_span(start, end, label=label, alignment_mode="expand")
                if span is not None:
                    ents.append(span)
                    scores.append(self._ner_score)
        # Lemmas only feed the context-word booster; the lower-cased form is close enough and
        # spares the tagger + lemmatizer (a third of the pipeline's time).
        return NlpArtifacts(entities=ents, tokens=doc, tokens_indices=[t.idx for t in doc],
                            lemmas=[t.lower_ for t in doc], nlp_engine=self.engine.nlp_engine,
                            language=self.config.language, scores=scores)

    def _analyse(self, job: Job, entities: list[str]) -> None:
        if not entities:
            if job.shapes:
                job.output, job.found = _mask(job.text, [(s.start, s.end, s.entity) for s in job.shapes])
            else:
                job.output = job.text
            return
        engine = self.engine
        engine.deadline = self._clock() + self._budget_s
        try:
            results = engine.analyzer.analyze(
                text=job.text, language=self.config.language, entities=entities,
                score_threshold=job.threshold, context=job.ctx or None, nlp_artifacts=self._artifacts(job))
            engine.check_deadline()
            if self._shapes:  # an identifier's fragment (ORD-70401955) is not a value of its own
                results = [r for r in results if r.entity_type in NER_ENTITIES
                           or not _glued(job.text, r.start, r.end)]
            if job.shapes:
                job.output, job.found = _mask(job.text, [(s.start, s.end, s.entity) for s in job.shapes],
                                              [(r.start, r.end, r.entity_type) for r in results])
            elif results:
                job.output = engine.anonymizer.anonymize(text=job.text, analyzer_results=results).text
                job.found = tuple(sorted({r.entity_type for r in results}))
            else:
                job.output = job.text
            engine.check_deadline()
        except BudgetExceeded:
            job.failed = "budget"
        except Exception:
            job.failed = "error"
        finally:
            engine.deadline = float("inf")


def _mask(text: str, first: Sequence[tuple[int, int, str]],
          others: Sequence[tuple[int, int, str]] = ()) -> tuple[str, tuple[str, ...]]:
    """``text`` with each span replaced by ``<ENTITY>``; overlapping spans merge into one, named
    after the first shape span in it (``first``), else its first span."""
    spans = sorted([(s, e, t, 0) for s, e, t in first] + [(s, e, t, 1) for s, e, t in others if e > s])
    merged: list[list[Any]] = []
    for start, end, entity, rank in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if rank < last[3]:
                last[2], last[3] = entity, rank
            last[1] = max(last[1], end)
        else:
            merged.append([start, end, entity, rank])
    out, pos = [], 0
    for start, end, entity, _ in merged:
        out += [text[pos:start], f"<{entity}>"]
        pos = end
    out.append(text[pos:])
    return "".join(out), tuple(sorted({m[2] for m in merged}))


def _glued(text: str, start: int, end: int) -> bool:
    """True if the span is part of a longer identifier: glued to a word by ``-_#/``."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before in _GLUE or before.isalnum() or after in _GLUE or after.isalnum()


def _without_identifiers(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """An NER span split around its tokens that hold a digit: names hold none, and the small
    English model tags "Bestellung ORD-46237774" or "ticket van 2026-04-05T01:02:43Z" as one entity."""
    span = text[start:end]
    if not any(c.isdigit() for c in span):
        return [(start, end)]
    out: list[tuple[int, int]] = []
    run: tuple[int, int] | None = None
    for m in _TOKEN.finditer(span):
        a, b = m.start() + start, m.end() + start
        if any(c.isdigit() for c in m.group()):
            if run:
                out.append(run)
            run = None
        else:
            run = (run[0], b) if run else (a, b)
    if run:
        out.append(run)
    return out
