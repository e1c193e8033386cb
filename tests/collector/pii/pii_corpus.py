"""A synthetic corpus of schema-v1 events full of PII, for the scrub tests (unit and end-to-end).

``pii_corpus()`` returns :class:`PiiCorpus`: ``events`` (valid prediction, label and outcome
events), ``secrets`` (every pattern-type value planted: emails, phone numbers in several
formats, Luhn-valid card numbers, valid IBANs, IPv4/IPv6 addresses, US SSNs, street
addresses; none may appear anywhere after scrubbing) and ``names`` (person names planted, with
the event index each sits in, to measure the share NER catches).

Values appear both inside free text (``features.message``, ``error``, labels) and in dedicated
fields (``features.email``, ``features.card_number``, ``tags.contact`` ...).
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

from driftline.sdk.ids import uuid7
from driftline.sdk.contract.schema import validate_event

__all__ = ["PiiCorpus", "pii_corpus", "luhn_complete", "iban"]

FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Diego", "Hannah", "Ravi", "Sophie", "Liam",
         "Fatima", "Kenji", "Emma", "Noah", "Chloe", "Lucas", "Amelia", "Mateo", "Grace", "Ethan"]
LAST = ["Gonzalez", "Thompson", "Khan", "Zhang", "Petrova", "Fernandez", "Schmidt", "Patel",
        "Dubois", "Murphy", "Haddad", "Tanaka", "Wilson", "Anderson", "Martin", "Rossi", "Walker",
        "Nguyen", "Campbell", "Fischer"]
STREETS = ["Elm", "Maple", "Oak", "Cedar", "Pine", "Washington", "Lake", "Hill", "Sunset", "Park"]
SUFFIXES = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard", "Court", "Way"]
CITIES = ["Springfield", "Portland", "Boston", "Denver", "Austin", "Chicago", "Seattle"]
AREAS = ["212", "415", "312", "617", "206", "303", "512", "646", "718", "202"]
DOMAINS = ["example.org", "mail.example.com", "gmail.com", "corp.example.co.uk", "outlook.com"]


class PiiCorpus(NamedTuple):
    events: list[dict[str, Any]]
    secrets: list[str]
    names: list[tuple[int, str]]  # (index into events, "First Last")


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A Luhn-valid card number of ``length`` digits starting with ``prefix``."""
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def iban(country: str, bban: str) -> str:
    """A valid IBAN (ISO 13616 mod-97 check digits) for ``country`` and ``bban``."""
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - num % 97:02d}{bban}"


def _phone(rng: random.Random, fmt: int) -> str:
    a, e, s = rng.choice(AREAS), rng.randint(201, 989), rng.randint(1000, 9999)
    if e % 100 == 11:
        e += 1
    return [
        f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"{a}.{e}.{s}", f"+1 {a} {e} {s}", f"+1-{a}-{e}-{s}",
        f"+44 20 7946 {rng.randint(100, 999):04d}", f"+49 30 {rng.randint(2000000, 8999999)}",
    ][fmt % 7]


def _card(rng: random.Random, fmt: int) -> str:
    kind = fmt % 4
    number = [luhn_complete("4", 16, rng), luhn_complete(str(rng.randint(51, 55)), 16, rng),
              luhn_complete(rng.choice(["34", "37"]), 15, rng), luhn_complete("6011", 16, rng)][kind]
    style = (fmt // 4) % 3
    if style == 0 or kind == 2:
        return number
    sep = " " if style == 1 else "-"
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


def _iban(rng: random.Random, fmt: int) -> str:
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    value = [iban("DE", digits(18)), iban("GB", "NWBK" + digits(14)), iban("FR", digits(23)),
             iban("NL", "ABNA" + digits(10))][fmt % 4]
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if fmt % 2 else value


def _ip(rng: random.Random, fmt: int) -> str:
    if fmt % 3 == 2:
        return "2001:db8:" + ":".join(f"{rng.randint(1, 0xFFFF):x}" for _ in range(6))
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(101, 665) if a != 666])
    return f"{area:03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"


def pii_corpus(n: int = 60, seed: int = 7) -> PiiCorpus:
    """Build ``n`` prediction events (plus one label and one outcome per 3) with planted PII."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    secrets: list[str] = []
    names: list[tuple[int, str]] = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7 + 3) % len(LAST)]
        name = f"{first} {last}"
        email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
        phone, phone2 = _phone(rng, i), _phone(rng, i + 3)
        card, card2 = _card(rng, i), _card(rng, i + 5)
        acct, ip, ssn = _iban(rng, i), _ip(rng, i), _ssn(rng)
        address = f"{rng.randint(2, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}"
        city = rng.choice(CITIES)
        message = [
            f"Hi, this is {name} from {address}, {city}. My card {card} was charged twice, "
            f"please call me at {phone} or write to {email}.",
            f"{name} asked to move the payment to IBAN {acct}; login came from {ip}. "
            f"SSN on file is {ssn}.",
            f"Dear support, my name is {name}. Ship the order to {address} and text {phone}.",
            f"Customer {name} (ssn {ssn}) disputes card {card}; contact: {email}, IP {ip}.",
        ][i % 4]
        pred = {
            "schema_version": 1, "type": "prediction", "event_id": uuid7(),
            "timestamp": f"2026-11-24T03:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
            "model": "support-router", "model_version": "3", "variant": "primary",
            "request_id": f"req-{i}",
            "features": {
                "message": message, "email": email, "phone": phone2, "card_number": card2,
                "iban": acct, "client_ip": ip, "ssn": ssn.replace("-", "") if i % 2 else ssn,
                "customer_name": name, "shipping_address": f"{address}, {city}",
                "plan": rng.choice(["gold", "silver", "free"]), "tenure_months": rng.randint(1, 80),
                "vip": i % 5 == 0,
            },
            "prediction": {"billing": 0.7, "fraud": 0.2, "other": 0.1},
            "latency_ms": 12.5, "status": "error" if i % 6 == 0 else "ok",
            "tags": {"region": "eu", "contact": email if i % 2 else phone},
        }
        if i % 6 == 0:
            pred["error"] = f"upstream rejected card {card} for {email}"
        events.append(validate_event(pred))
        names.append((len(events) - 1, name))
        secrets += [email, phone, phone2, card, card2, acct, ip, ssn, ssn.replace("-", ""), address]
        if i % 3 == 0:
            label = {
                "schema_version": 1, "type": "label", "event_id": uuid7(),
                "timestamp": pred["timestamp"], "model": "support-router", "model_version": "3",
                "prediction_id": pred["event_id"], "label": f"refund to {card} ({email})",
                "tags": {"agent_note": f"called {phone}"},
            }
            outcome = {
                "schema_version": 1, "type": "outcome", "event_id": uuid7(),
                "timestamp": pred["timestamp"], "model": "support-router",
                "prediction_id": pred["event_id"], "name": "resolved", "value": 1,
                "tags": {"customer_ip": ip, "customer_email": email},
            }
            events += [validate_event(label), validate_event(outcome)]
    return PiiCorpus(events, sorted(set(secrets)), names)
