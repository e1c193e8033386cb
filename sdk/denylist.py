"""Early denylist: mask fields named like secrets before an event leaves the model's process.

The collector scrubs every string with Presidio, but some fields should never travel at all:
a ``password`` feature, an ``ssn`` tag. The SDK and the sidecar mask them on the way out. Pure
Python and cheap: one dict lookup per field name after the first sight of that name.

Names are matched after normalisation: split on non-alphanumerics and camelCase, lower-cased.
A field matches when a run of its words spells a denylisted name (with or without spaces), so
``card_number``, ``cardNumber``, ``Card-Number``, ``customer_card_number`` and
``creditcardnumber`` match ``card number``, while ``classname`` does not match ``ssn``
(no substring matching inside a word).

Example
-------
>>> dl = Denylist()
>>> dl.mask_event({"features": {"cardNumber": "4111 1111 1111 1111", "age": 41}})["features"]
{'cardNumber': '[REDACTED]', 'age': 41}
>>> dl.matches("user_email"), dl.matches("classname")
(True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Mapping  # typing.Mapping makes isinstance ~2.5x slower
from typing import Any, Iterable

from driftline.sdk.errors import ConfigError

__all__ = ["DEFAULT_DENYLIST", "Denylist", "DenylistConfig", "normalize_field_name"]

DEFAULT_DENYLIST: tuple[str, ...] = (
    "password", "passwd", "pwd", "passphrase", "secret", "api key", "access token", "auth token",
    "refresh token", "private key", "ssn", "social security number", "card number",
    "credit card", "credit card number", "cc number", "pan", "cvv", "cvc", "iban", "email",
    "email address", "e mail", "phone", "phone number", "date of birth", "dob", "passport number",
    "drivers license", "tax id",
)
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[0-9]|$|[^A-Za-z0-9])|[A-Z]?[a-z]+|[0-9]+|[A-Z]+")
_MAX_MEMO = 10_000  # names are a bounded vocabulary; the cap guards against per-request names


def normalize_field_name(name: str) -> tuple[str, ...]:
    """Words of a field name: ``"cardNumber"`` → ``("card", "number")``, ``"SSN_2"`` → ``("ssn", "2")``."""
    return tuple(w.lower() for w in _WORD.findall(name))


@dataclass(frozen=True)
class DenylistConfig:
    """Field names to mask (``fields`` replaces the defaults, ``extra_fields`` adds to them)."""

    fields: tuple[str, ...] = DEFAULT_DENYLIST
    extra_fields: tuple[str, ...] = ()
    mask: str = "[REDACTED]"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DenylistConfig:
        """Build from the ``denylist:`` mapping of a config file; unknown keys are errors."""
        raw = raw or {}
        unknown = sorted(set(raw) - {"fields", "extra_fields", "mask"})
        if unknown:
            raise ConfigError(f"denylist.{unknown[0]}: unknown key; allowed: extra_fields, fields, mask")
        kwargs: dict[str, Any] = {}
        for key in ("fields", "extra_fields"):
            if key in raw:
                value = raw[key]
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                    raise ConfigError(f"denylist.{key}: expected a list of field names")
                kwargs[key] = tuple(value)
        if "mask" in raw:
            if not isinstance(raw["mask"], str):
                raise ConfigError("denylist.mask: expected a string")
            kwargs["mask"] = raw["mask"]
        return cls(**kwargs)


class Denylist:
    """Masks denylisted fields in ``features`` and ``tags`` of an event (schema v1)."""

    def __init__(self, config: DenylistConfig | None = None, *, fields: Iterable[str] | None = None,
                 mask: str | None = None) -> None:
        config = config or DenylistConfig()
        names = tuple(fields) if fields is not None else config.fields + config.extra_fields
        self.mask = config.mask if mask is None else mask
        self._denied = frozenset(" ".join(normalize_field_name(n)) for n in names if normalize_field_name(n))
        # Also the spelled-together forms: "creditcardnumber", "emailaddress".
        self._denied |= frozenset(d.replace(" ", "") for d in self._denied)
        self._max_words = max((d.count(" ") + 1 for d in self._denied), default=0)
        self._memo: dict[str, bool] = {}
        # Feature sets seen to hold no denylisted name: a model sends the same names event after
        # event, so one tuple lookup replaces a lookup per name.
        self._clean: set[tuple[str, ...]] = set()

    def matches(self, name: str) -> bool:
        """True if ``name`` (any casing or separator) contains a denylisted name as whole words."""
        hit = self._memo.get(name)
        if hit is None:
            words = normalize_field_name(name)
            hit = any(
                (" ".join(words[i:j]) in self._denied or "".join(words[i:j]) in self._denied)
                for i in range(len(words))
                for j in range(i + 1, min(len(words), i + self._max_words) + 1)
            )
            if len(self._memo) < _MAX_MEMO:
                self._memo[name] = hit
        return hit

    def mask_mapping(self, mapping: Mapping[str, Any]) -> tuple[Mapping[str, Any], int]:
        """Return ``(mapping, n_masked)``; a copy only when something was masked.

        Values that are None stay None (nothing to hide); everything else becomes the mask.
        """
        names = tuple(mapping)
        if names in self._clean:
            return mapping, 0
        out: dict[str, Any] | None = None
        n = 0
        if not any(self.matches(name) for name in names):
            if len(self._clean) < _MAX_MEMO:
                self._clean.add(names)
            return mapping, 0
        for name, value in mapping.items():
            if value is not None and self.matches(name):
                if out is None:
                    out = dict(mapping)
                out[name] = self.mask
                n += 1
        return (out if out is not None else mapping), n

    def mask_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return ``event`` with denylisted features and tags masked (copied only if needed)."""
        out = event
        for root in ("features", "tags"):
            mapping = event.get(root)
            if isinstance(mapping, Mapping) and mapping:
                masked, n = self.mask_mapping(mapping)
                if n:
                    if out is event:
                        out = dict(event)
                    out[root] = masked
        return out
