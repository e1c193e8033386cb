"""Shape matching: a value shaped like a phone number, card, IBAN or national id is personal data.

Presidio's recognizers *validate* what their patterns find (libphonenumber's numbering plans, the
Luhn and mod-97 checksums, per-country id checksums) and drop what fails: ``+1 439-524-5961`` is
not a valid NANP number, so it was stored in full. For a privacy control the shape is enough.
:func:`find_shapes` runs compiled regexes, no validation, before Presidio (``pattern_mode:
shape``, the default; ``validated`` turns them off and keeps Presidio's stricter behaviour).

Each :class:`Shape` names the entity type it masks as (``<PHONE_NUMBER>``, ``<IBAN_CODE>``,
``<DE_TAX_ID>``...). Shapes are tried in order and the first one to claim a span keeps it, so
specific ids come before the generic "long digit run" phone and card shapes. *Weak* shapes (a bare
9-digit number could be an SSN, a BSN, a NIF or an order number) only count next to one of their
keywords: in the field's name (``features.ssn``) or in the 60 characters before the value
("BSN: 123456782", "geboren am 01.02.1980").

What stays unmasked on purpose (hard negatives, bench/bench_pii_recall.py): bare numbers of up to
9 digits with no keyword, dates and timestamps without a birth keyword, UUIDs, prefixed order
numbers and product codes (``ORD-20240118``, ``SKU-4410-XL``), dotted versions of three parts.
A bare run of 10 to 19 digits, a 4-part dotted number with octets up to 255, and grouped digits
that add up to 9+ digits are masked whatever they are (phone, card or IP shape): fail closed.

Example
-------
>>> text = "call +1 439-524-5961 or mail ann@example.org"
>>> [(m.entity, text[m.start:m.end]) for m in find_shapes(text, ())]
[('PHONE_NUMBER', '+1 439-524-5961'), ('EMAIL_ADDRESS', 'ann@example.org')]
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

__all__ = ["SHAPES", "SHAPE_ENTITIES", "SUPERSEDED", "Shape", "ShapeMatch", "find_shapes"]


@dataclass(frozen=True)
class Shape:
    """One shape: ``regex`` (group ``v``, if any, is the part masked), the digit count its
    match must have, ``keywords`` it needs nearby (weak shapes) and an extra syntax ``check``."""

    entity: str
    regex: re.Pattern[str]
    min_digits: int = 0
    max_digits: int = 99
    keywords: re.Pattern[str] | None = None
    check: Callable[[str], bool] | None = None
    #: the keywords must be in the field's name (not just in the text before the value)
    field_only: bool = False


class ShapeMatch(NamedTuple):
    start: int
    end: int
    entity: str


def _kw(*words: str) -> re.Pattern[str]:
    return re.compile(r"(?<![^\W_])(?:" + "|".join(words) + r")(?![^\W_])", re.IGNORECASE)


def _c(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        return False
    return True


# Boundaries: a number glued to a word, a dash, a dot, '#' or '/' is part of an identifier
# (ORD-2024..., v2.13.4, #4821337, 10.1000/xyz), not a phone or card on its own.
_L = r"(?<![\w.,+#/\-])"
_R = r"(?![\w\-]|[.,]\d)"
_EXT = r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?"
_DATE_NUM = r"\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}"
_MONTH_WORD = r"[^\W\d_]{3,10}\.?"
_DATE_TEXT = (rf"\d{{1,2}}(?:\.|º|er)?\s+(?:de\s+)?{_MONTH_WORD}\s+(?:de\s+)?\d{{4}}"
              rf"|{_MONTH_WORD}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}")

_BIRTH = _kw(
    "born", "birth", "birthday", "birthdate", "dob", r"d\.o\.b", "geboren", r"geb", "geburtsdatum",
    "geburtstag", "né", "née", "naissance", "nacido", "nacida", "nacimiento", "nato", "nata",
    "nascita", "geboortedatum", "nascido", "nascida", "nascimento", "fecha de nacimiento",
)
_PHONE_KW = _kw(
    "phone", "tel", "telephone", "mobile", "cell", "call", "text", "sms", "whatsapp", "fax", "contact",
    "telefon", "telefonnummer", "handy", "mobil", "anrufen", "téléphone", "portable", "appeler",
    "appelez", "teléfono", "telefono", "móvil", "movil", "llamar", "llame", "cellulare", "chiamare",
    "chiamami", "telefoon", "mobiel", "bellen", "bel", "telemóvel", "celular", "ligar", "ligue",
    "contatti", "contatto", "contato", "contacto", "kontakt", "chiamatemi", "telefonare", "telefone", "llámeme",
    "llamame", "rückruf", "ruf", "appelez-moi", "ligue", "liga", "reach",
)
# Field names that hold a person's name ("customer_name", "first_name", "nachname"), not any
# "*_name" (product_name, plan_name are categorical features).
_NAME_FIELD = re.compile(
    r"^(?:(?:customer|user|client|person|contact|full|first|last|given|family|middle|holder|card holder|"
    r"cardholder|account holder|patient|employee|member|sender|recipient|buyer|owner|passenger|guest|"
    r"billing|shipping) )?name$|^(?:name|surname|fullname|firstname|lastname|forename|nachname|vorname|"
    r"cognome|nome|apellidos?|nombre|nom|prénom|prenom|achternaam|voornaam|naam|sobrenome)$")
# A name after a phrase that introduces one ("my name is", "ich heiße", "je m'appelle", "thanks X,"):
# capitalised words, an optional title, particles (van der, de, da) between them. spaCy's small
# English model finds most names in English text but about two thirds elsewhere; these phrases are
# how support messages name their writer in every language the recall bench covers.
_UPPER = "A-ZÀ-ÖØ-Þ"
_NAME_WORD = rf"[{_UPPER}][^\W\d_]*(?:[\-'][{_UPPER}]?[^\W\d_]+)*"
_PARTICLE = r"(?:van der|van den|van de|van|von|de la|de|da|das|do|dos|del|della|di|du|le|la|ten|ter)"
_TITLE = r"(?:(?:Dr|Mr|Mrs|Ms|Prof|Herr|Frau|Sig\.ra|Sig|Dott|Dra|Sr|Sra|Srta|Dña|Dhr|Mevr|Mme|M)\.?\s+)?"
_NAME = rf"{_TITLE}{_NAME_WORD}(?:\s+(?:{_PARTICLE}\s+)?{_NAME_WORD}){{0,3}}"
_INTRO = (r"(?i:my name is|this is|i am|i'm|mein name ist|ich heiße|ich heisse|ich bin|hier ist|je m'appelle|"
          r"je suis|me llamo|mi nombre es|soy|mi chiamo|sono|ik ben|mijn naam is|hier is|met|meu nome é|"
          r"o meu nome é|sou|chamo-me|customer|kunde|kundin|klant|le client|la cliente|el cliente|il cliente|"
          r"o cliente|a cliente)")
_GREETING = (r"(?i:hi|hello|dear|thanks|thank you|hallo|liebe|lieber|danke|bonjour|merci|hola|gracias|"
             r"buongiorno|ciao|grazie|beste|bedankt|olá|ola|obrigado|obrigada)")
_NATIONAL_ID_KW = ("id", "identity", "national", "nationale", "ausweis", "personalausweis",
                   "personalausweisnummer", "ausweisnummer", "idnummer",
                   "identidad", "identità", "identiteit", "identidade", "documento", "dni", "carta",
                   "carte", "cni")

#: In priority order: the first shape to claim a span keeps it.
SHAPES: tuple[Shape, ...] = (
    Shape("EMAIL_ADDRESS", _c(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}")),
    Shape("DATE_OF_BIRTH", _c(rf"(?<![\w])(?P<v>{_DATE_NUM}|{_DATE_TEXT})(?![\w])"), 4, 8, _BIRTH),
    Shape("MAC_ADDRESS", _c(r"(?<![\w:\-])[0-9A-Fa-f]{2}([:\-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:\-])"
                            r"|\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b")),
    Shape("IBAN_CODE", _c(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")),
    Shape("IT_FISCAL_CODE", _c(r"\b[A-Z]{6}[\dLMNP-V]{2}[A-EHLMPR-T][\dLMNP-V]{2}[A-Z][\dLMNP-V]{3}[A-Z]\b"), 1),
    Shape("BR_CPF", _c(rf"{_L}\d{{3}}\.\d{{3}}\.\d{{3}}-\d{{2}}{_R}")),
    Shape("BR_CNPJ", _c(rf"{_L}\d{{2}}\.\d{{3}}\.\d{{3}}/\d{{4}}-\d{{2}}{_R}")),
    Shape("US_SSN", _c(rf"{_L}\d{{3}}([- ])\d{{2}}\1\d{{4}}{_R}")),
    Shape("UK_NINO", _c(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Z]\b")),
    Shape("ES_NIE", _c(r"\b[XYZ]-?\d{7}-?[A-Z]\b")),
    Shape("ES_NIF", _c(r"(?<![\w\-])\d{8}-?[A-Z]\b")),
    Shape("FR_NIR", _c(rf"{_L}[12] ?\d{{2}} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{{2}}|2[AB]) ?\d{{3}} ?\d{{3}} ?\d{{2}}"
                       rf"{_R}")),
    Shape("DE_TAX_ID", _c(rf"{_L}[1-9]\d ?\d{{3}} ?\d{{3}} ?\d{{3}}{_R}"), 11, 11,
          _kw("steuer", "steuer-id", "steueridentifikationsnummer", "steuerid", "idnr", "identifikationsnummer",
              "tin", "tax", "steuernummer")),
    Shape("DE_TAX_ID", _c(rf"{_L}[1-9]\d \d{{3}} \d{{3}} \d{{3}}{_R}")),
    Shape("DE_ID_CARD", _c(r"\b[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{7}[0-9]D?\b|\bT\d{8}\b"), 1,
          keywords=_kw(*_NATIONAL_ID_KW)),
    Shape("NL_BSN", _c(rf"{_L}\d{{4}}\.?\d{{2}}\.?\d{{3}}{_R}"), 9, 9,
          _kw("bsn", "burgerservicenummer", "sofinummer", "sofi")),
    Shape("PT_NIF", _c(rf"{_L}(?:PT ?)?\d{{3}} ?\d{{3}} ?\d{{3}}{_R}"), 9, 9,
          _kw("nif", "nipc", "contribuinte", "fiscal")),
    Shape("BR_CPF", _c(rf"{_L}\d{{11}}{_R}"), keywords=_kw("cpf")),
    Shape("US_SSN", _c(rf"{_L}\d{{9}}{_R}"), keywords=_kw("ssn", "social", "security", "ss#")),
    Shape("CREDIT_CARD", _c(rf"{_L}\d{{4}}(?:[ \-]\d{{4}}){{2,3}}(?:[ \-]\d{{1,4}})?{_R}"
                            rf"|{_L}\d{{4}}[ \-]\d{{6}}[ \-]\d{{4,5}}{_R}|{_L}\d{{12,19}}{_R}"), 12, 19),
    Shape("IP_ADDRESS", _c(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                           r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)")),
    Shape("IP_ADDRESS", _c(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])"),
          check=_ipv6),
    Shape("PHONE_NUMBER", _c(rf"(?:\+|(?<![\w])00)\d[\d .\-/()]{{5,22}}\d{_EXT}(?![\w\-])"), 8, 21),
    Shape("PHONE_NUMBER", _c(rf"(?<![\w])\(\+?\d{{2,5}}\)[ .\-]?\d[\d .\-]{{3,14}}\d{_EXT}(?![\w\-])"), 7, 21),
    Shape("PHONE_NUMBER", _c(rf"{_L}\d{{1,5}}(?:[ .\-]\d{{1,8}}){{1,6}}{_EXT}(?![\w\-:/]|[.,]\d)"), 9, 21),
    Shape("PHONE_NUMBER", _c(rf"{_L}0\d{{2,5}}/\d[\d \-]{{3,10}}\d{_EXT}{_R}"), 7, 15),
    Shape("PHONE_NUMBER", _c(rf"{_L}\d{{10,15}}{_EXT}{_R}"), 10, 21),
    Shape("PHONE_NUMBER", _c(rf"{_L}\d[\d .\-/]{{5,16}}\d{_EXT}{_R}"), 7, 21, _PHONE_KW),
    Shape("PERSON", _c(rf"(?<![\w]){_INTRO}\s+(?P<v>{_NAME})(?![\w])")),
    Shape("PERSON", _c(rf"(?<![\w]){_GREETING}\s+(?P<v>{_NAME})(?=\s*[,!:;])")),
    # A name field's whole value (words only): NER misses many names without a sentence around.
    Shape("PERSON", _c(r"^\s*(?P<v>[^\W\d_][^\W\d_'.\-]*(?:[ \-]+[^\W\d_][^\W\d_'.\-]*){0,6})\s*$"),
          keywords=_NAME_FIELD, field_only=True),
)

SHAPE_ENTITIES: frozenset[str] = frozenset(s.entity for s in SHAPES)
#: Entities whose shapes match everything Presidio's recognizer would (its regex, minus the
#: validation): in ``shape`` mode that recognizer is not run. Phone is among them although
#: libphonenumber also finds some 7-9 digit numbers with no keyword: its lenient matcher also took
#: timestamps ("2025-02-12 06:01") and UUID fragments for phone numbers (21 % of the recall
#: bench's hard negatives). US SSN (Presidio's context words) and the German id card
#: (Presidio matches it without a keyword, with its checksum) and the Italian fiscal code
#: (Presidio's is case-insensitive) keep their Presidio recognizer too.
SUPERSEDED: frozenset[str] = frozenset({
    "EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD", "IP_ADDRESS", "MAC_ADDRESS", "DE_TAX_ID", "ES_NIF", "PHONE_NUMBER",
    "ES_NIE", "UK_NINO",
})

_NOT_DIGITS = str.maketrans("", "", "0123456789")
_CONTEXT_CHARS = 60
_NO_DIGITS_OK = frozenset({"EMAIL_ADDRESS", "PERSON", "MAC_ADDRESS", "IP_ADDRESS"})


def _digits(text: str) -> int:
    return len(text) - len(text.translate(_NOT_DIGITS))


def find_shapes(text: str, field_words: Iterable[str], entities: Iterable[str] | None = None) -> list[ShapeMatch]:
    """Spans of ``text`` shaped like a pattern entity, non-overlapping, sorted by start.

    ``field_words``: the words of the field's name (``features.customer_ssn`` -> customer, ssn),
    context for weak shapes. ``entities``: only these types (all when None).
    """
    field_ctx = " ".join(field_words)
    no_digits = _digits(text) == 0
    if no_digits and "@" not in text and ":" not in text and text.islower():
        return []  # most categorical values: nothing any shape could match
    wanted = None if entities is None else frozenset(entities)
    claimed: list[ShapeMatch] = []
    for shape in SHAPES:
        if wanted is not None and shape.entity not in wanted or no_digits and shape.entity not in _NO_DIGITS_OK:
            continue
        for m in shape.regex.finditer(text):
            start, end = m.span("v") if "v" in shape.regex.groupindex else m.span()
            value = text[start:end]
            if shape.min_digits or shape.max_digits < 99:
                n = _digits(value)
                if not shape.min_digits <= n <= shape.max_digits:
                    continue
            if shape.check is not None and not shape.check(value):
                continue
            if any(start < c.end and c.start < end for c in claimed):
                continue
            if shape.keywords is not None and not (
                    shape.keywords.search(field_ctx)
                    or not shape.field_only and shape.keywords.search(text, max(0, start - _CONTEXT_CHARS), start)):
                continue
            claimed.append(ShapeMatch(start, end, shape.entity))
    claimed.sort()
    return claimed
