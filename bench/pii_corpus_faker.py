"""Generate the PII recall corpus with Faker. Runs in the Faker venv (stdlib + Faker only).

    python bench/pii_corpus_faker.py --messages-per-locale 150 --seed 15 > corpus.json

Writes JSON: a list of records ``{"locale", "kind": "text"|"field", "field", "text",
"entities": [[type, value], ...], "negatives": [value, ...]}``. ``text`` records are support
messages in the locale's language from varied templates; ``field`` records are one bare value in
a field named as a real schema would name it. ``entities`` are what must not survive the scrub,
``negatives`` the hard negatives that must (order numbers, amounts, timestamps, UUIDs, versions,
product codes). bench/bench_pii_recall.py runs it and scrubs the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import uuid

from faker import Faker

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pt_PT")
LANG = {"en_US": "en", "en_GB": "en", "de_DE": "de", "fr_FR": "fr", "es_ES": "es", "it_IT": "it",
        "nl_NL": "nl", "pt_BR": "pt", "pt_PT": "pt"}
DOB_FORMAT = {"en_US": "%m/%d/%Y", "en_GB": "%d/%m/%Y", "de_DE": "%d.%m.%Y", "fr_FR": "%d/%m/%Y",
              "es_ES": "%d/%m/%Y", "it_IT": "%d/%m/%Y", "nl_NL": "%d-%m-%Y", "pt_BR": "%d/%m/%Y",
              "pt_PT": "%d/%m/%Y"}
# The national id of each locale: (entity type, keyword used in text, field name).
NATIONAL_ID = {
    "en_US": ("US_SSN", "SSN", "ssn"), "en_GB": ("UK_NINO", "National Insurance number", "ni_number"),
    "de_DE": ("DE_TAX_ID", "Steuer-ID", "steuer_id"), "fr_FR": ("FR_NIR", "numéro de sécurité sociale", "nir"),
    "es_ES": ("ES_NIF", "DNI", "dni"), "it_IT": ("IT_FISCAL_CODE", "codice fiscale", "codice_fiscale"),
    "nl_NL": ("NL_BSN", "BSN", "bsn"), "pt_BR": ("BR_CPF", "CPF", "cpf"), "pt_PT": ("PT_NIF", "NIF", "nif"),
}
ID_CARD_CHARS = "CFGHJKLMNPRTVWXYZ0123456789"

# {n} name, {ph} phone, {em} email, {cc} card, {ib} IBAN, {ip} IP, {mac} MAC, {dob} date of birth,
# {nid} national id (with its keyword {kw}); negatives: {ord} order, {amt} amount, {ts} timestamp,
# {uid} UUID, {ver} version, {sku} product code.
TEMPLATES = {
    "en": [
        "Hi, this is {n}. My card {cc} was charged {amt} twice for order {ord}, call me at {ph}.",
        "Hello support, {n} here (born {dob}). Please update my {kw} to {nid} and send the receipt to {em}.",
        "Refund request from {n}: IBAN {ib}, amount {amt}, ticket opened {ts}. Device {mac} on app {ver}.",
        "The login at {ts} came from {ip}, not from me. My name is {n} and my phone is {ph}. Ref {uid}.",
        "Dear team, I ({n}) ordered {sku} on {ts}; order {ord}. Contact: {em} or {ph}. DOB {dob}.",
        "Customer {n} disputes {amt} on card {cc}; {kw} {nid}; request id {uid}; client {ver} at {ip}.",
        "Please ship {sku} to {n}. If anything goes wrong text {ph}. Paid {amt} by IBAN {ib}.",
        "Thanks {n}, we reset the router {mac}. Firmware {ver}, last seen {ts} from {ip}. Case {ord}.",
    ],
    "de": [
        "Hallo, hier ist {n}. Meine Karte {cc} wurde zweimal mit {amt} belastet, Bestellung {ord}. Rückruf unter {ph}.",
        "Guten Tag, ich bin {n}, geboren am {dob}. Meine {kw} lautet {nid}, bitte Beleg an {em}.",
        "Erstattung an {n}: IBAN {ib}, Betrag {amt}, Ticket vom {ts}. Gerät {mac}, App-Version {ver}.",
        "Die Anmeldung um {ts} kam von {ip}, nicht von mir. Ich heiße {n}, Telefon {ph}. Referenz {uid}.",
        "Sehr geehrtes Team, {n} hat {sku} am {ts} bestellt (Bestellung {ord}). Kontakt: {em} oder {ph}.",
        "Kunde {n} widerspricht {amt} auf Karte {cc}; {kw} {nid}; Vorgang {uid}; Client {ver} von {ip}.",
    ],
    "fr": [
        "Bonjour, je suis {n}. Ma carte {cc} a été débitée deux fois de {amt}, commande {ord}. Appelez-moi au {ph}.",
        "Madame, Monsieur, {n}, né le {dob}. Mon {kw} est {nid}, merci d'envoyer le reçu à {em}.",
        "Remboursement pour {n} : IBAN {ib}, montant {amt}, ticket du {ts}. Appareil {mac}, version {ver}.",
        "La connexion de {ts} venait de {ip}, pas de moi. Je m'appelle {n}, téléphone {ph}. Réf {uid}.",
        "Le client {n} conteste {amt} sur la carte {cc} ; {kw} {nid} ; dossier {uid} ; produit {sku}.",
        "Merci {n}, colis {sku} expédié le {ts}, commande {ord}. Contact : {em} ou {ph}.",
    ],
    "es": [
        "Hola, soy {n}. Mi tarjeta {cc} se cobró dos veces {amt}, pedido {ord}. Llámeme al {ph}.",
        "Buenos días, me llamo {n}, nacido el {dob}. Mi {kw} es {nid}, envíen el recibo a {em}.",
        "Reembolso para {n}: IBAN {ib}, importe {amt}, incidencia del {ts}. Dispositivo {mac}, versión {ver}.",
        "El acceso de las {ts} vino de {ip}, no fui yo. Soy {n}, teléfono {ph}. Referencia {uid}.",
        "El cliente {n} reclama {amt} en la tarjeta {cc}; {kw} {nid}; expediente {uid}; producto {sku}.",
        "Gracias {n}, el pedido {ord} ({sku}) salió el {ts}. Contacto: {em} o {ph}.",
    ],
    "it": [
        "Buongiorno, sono {n}. La mia carta {cc} è stata addebitata due volte {amt}, ordine {ord}. Chiamatemi al {ph}.",
        "Salve, mi chiamo {n}, nato il {dob}. Il mio {kw} è {nid}, inviate la ricevuta a {em}.",
        "Rimborso per {n}: IBAN {ib}, importo {amt}, ticket del {ts}. Dispositivo {mac}, versione {ver}.",
        "L'accesso delle {ts} veniva da {ip}, non da me. Sono {n}, telefono {ph}. Riferimento {uid}.",
        "Il cliente {n} contesta {amt} sulla carta {cc}; {kw} {nid}; pratica {uid}; prodotto {sku}.",
        "Grazie {n}, l'ordine {ord} ({sku}) è partito il {ts}. Contatti: {em} o {ph}.",
    ],
    "nl": [
        "Hallo, met {n}. Mijn kaart {cc} is twee keer belast voor {amt}, bestelling {ord}. Bel me op {ph}.",
        "Beste klantenservice, ik ben {n}, geboren op {dob}. Mijn {kw} is {nid}, stuur de bon naar {em}.",
        "Terugbetaling voor {n}: IBAN {ib}, bedrag {amt}, ticket van {ts}. Apparaat {mac}, versie {ver}.",
        "De login om {ts} kwam van {ip}, niet van mij. Ik ben {n}, telefoon {ph}. Referentie {uid}.",
        "Klant {n} betwist {amt} op kaart {cc}; {kw} {nid}; dossier {uid}; product {sku}.",
        "Bedankt {n}, bestelling {ord} ({sku}) is verzonden op {ts}. Contact: {em} of {ph}.",
    ],
    "pt": [
        "Olá, sou {n}. Meu cartão {cc} foi cobrado duas vezes {amt}, pedido {ord}. Ligue para {ph}.",
        "Bom dia, meu nome é {n}, nascido em {dob}. Meu {kw} é {nid}, enviem o recibo para {em}.",
        "Reembolso para {n}: IBAN {ib}, valor {amt}, chamado de {ts}. Aparelho {mac}, versão {ver}.",
        "O acesso das {ts} veio de {ip}, não fui eu. Sou {n}, telefone {ph}. Referência {uid}.",
        "O cliente {n} contesta {amt} no cartão {cc}; {kw} {nid}; protocolo {uid}; produto {sku}.",
        "Obrigado {n}, o pedido {ord} ({sku}) saiu em {ts}. Contato: {em} ou {ph}.",
    ],
}
# Fixed ranges (Faker's defaults are relative to today): the same seed gives the same corpus.
START, END = dt.datetime(2024, 1, 1), dt.datetime(2026, 12, 1)
BORN_FROM, BORN_TO = dt.date(1935, 1, 1), dt.date(2007, 12, 31)
AMOUNT = {"en_US": "${:,.2f}", "en_GB": "£{:,.2f}"}
TIMESTAMPS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M", "%Y-%m-%d %H:%M")
SLOTS = {"n": "PERSON", "ph": "PHONE_NUMBER", "em": "EMAIL_ADDRESS", "cc": "CREDIT_CARD", "ib": "IBAN_CODE",
         "ip": "IP_ADDRESS", "mac": "MAC_ADDRESS", "dob": "DATE_OF_BIRTH"}
NEGATIVE_SLOTS = ("ord", "amt", "ts", "uid", "ver", "sku")
BARE_FIELDS = {"PHONE_NUMBER": "phone", "EMAIL_ADDRESS": "email", "CREDIT_CARD": "card_number",
               "IBAN_CODE": "iban", "IP_ADDRESS": "client_ip", "MAC_ADDRESS": "device_mac",
               "DATE_OF_BIRTH": "date_of_birth", "PERSON": "customer_name"}
NEGATIVE_FIELDS = {"ord": "order_id", "amt": "amount", "ts": "created_at", "uid": "request_id",
                   "ver": "app_version", "sku": "sku"}


def _amount(locale: str, rng: random.Random) -> str:
    value = rng.randint(100, 250_000) / 100
    if locale in AMOUNT:
        return AMOUNT[locale].format(value)
    text = f"{value:,.2f}".replace(",", " ").replace(".", ",")
    if locale in ("de_DE", "es_ES", "it_IT", "nl_NL", "pt_PT"):
        text = text.replace(" ", ".")
    return {"pt_BR": f"R$ {text}", "nl_NL": f"€ {text}"}.get(locale, f"{text} €")


def _negatives(locale: str, fake: Faker, rng: random.Random) -> dict[str, str]:
    ts = fake.date_time_between(start_date=START, end_date=END).strftime(rng.choice(TIMESTAMPS))
    version = rng.choice([f"v{rng.randint(1, 12)}.{rng.randint(0, 30)}.{rng.randint(0, 40)}",
                          f"{rng.randint(1, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                          f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}-beta.{rng.randint(1, 5)}"])
    order = rng.choice([f"ORD-{rng.randint(10_000_000, 99_999_999)}", f"#{rng.randint(1_000_000, 9_999_999)}",
                        f"{rng.randint(100_000, 999_999)}", f"A{rng.choice('BCDEFGH')}-{rng.randint(100_000, 999_999)}",
                        f"INV-{rng.randint(2019, 2026)}-{rng.randint(1, 999_999):06d}"])
    sku = rng.choice([f"SKU-{rng.randint(1000, 9999)}-{rng.choice(['XS', 'S', 'M', 'L', 'XL'])}",
                      f"PRD-{rng.randint(10_000, 99_999)}", f"{fake.lexify('??').upper()}-{rng.randint(1000, 9999)}"])
    return {"ord": order, "amt": _amount(locale, rng), "ts": ts, "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ver": version, "sku": sku}


def _card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number()
    style = rng.randrange(3)
    if style == 0:
        return number
    sep = " " if style == 1 else "-"
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def _iban(fake: Faker, rng: random.Random) -> str:
    value = fake.iban()
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def _national_id(locale: str, fake: Faker, rng: random.Random) -> str:
    if locale == "de_DE":  # Faker has no Steuer-ID: 11 digits, no leading zero (checksum not needed)
        digits = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(10))
        return digits if rng.random() < 0.5 else f"{digits[:2]} {digits[2:5]} {digits[5:8]} {digits[8:]}"
    if locale == "es_ES":
        return fake.nie() if rng.random() < 0.3 else fake.nif()
    if locale == "pt_BR":
        return fake.cpf() if rng.random() < 0.5 else fake.ssn()
    if locale == "pt_PT":
        return fake.vat_id().removeprefix("PT")
    return fake.ssn()


def _values(locale: str, fake: Faker, rng: random.Random) -> dict[str, str]:
    dob = fake.date_between(start_date=BORN_FROM, end_date=BORN_TO)
    return {
        "n": fake.name(), "ph": fake.phone_number(), "em": fake.email(), "cc": _card(fake, rng),
        "ib": _iban(fake, rng), "ip": fake.ipv4() if rng.random() < 0.6 else fake.ipv6(),
        "mac": fake.mac_address(), "dob": dob.strftime(DOB_FORMAT[locale] if rng.random() < 0.7 else "%Y-%m-%d"),
        "nid": _national_id(locale, fake, rng),
    }


def generate(messages_per_locale: int, seed: int, fields: bool = True) -> list[dict]:
    records: list[dict] = []
    for li, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed + li)
        rng = random.Random(seed * 1000 + li)
        lang = LANG[locale]
        id_type, keyword, id_field = NATIONAL_ID[locale]
        for i in range(messages_per_locale):
            values, negs = _values(locale, fake, rng), _negatives(locale, fake, rng)
            template = TEMPLATES[lang][i % len(TEMPLATES[lang])]
            text = template.format(kw=keyword, **values, **negs)
            entities = [[SLOTS[s], values[s]] for s in SLOTS if "{" + s + "}" in template]
            if "{nid}" in template:
                entities.append([id_type, values["nid"]])
            negatives = [negs[s] for s in NEGATIVE_SLOTS if "{" + s + "}" in template]
            records.append({"locale": locale, "kind": "text", "field": "message", "text": text,
                            "entities": entities, "negatives": negatives})
            if not fields:
                continue
            slot = list(SLOTS)[i % len(SLOTS)]
            records.append({"locale": locale, "kind": "field", "field": BARE_FIELDS[SLOTS[slot]],
                            "text": values[slot], "entities": [[SLOTS[slot], values[slot]]], "negatives": []})
            if i % 3 == 0:
                records.append({"locale": locale, "kind": "field", "field": id_field, "text": values["nid"],
                                "entities": [[id_type, values["nid"]]], "negatives": []})
            if locale == "de_DE" and i % 5 == 0:  # the Personalausweis: 9 characters + check digit
                card = rng.choice(ID_CARD_CHARS[:17]) + "".join(rng.choice(ID_CARD_CHARS) for _ in range(7)) \
                    + str(rng.randint(0, 9))
                records.append({"locale": locale, "kind": "text", "field": "message",
                                "text": f"Meine Personalausweisnummer ist {card}, bitte prüfen.",
                                "entities": [["DE_ID_CARD", card]], "negatives": []})
            neg = NEGATIVE_SLOTS[i % len(NEGATIVE_SLOTS)]
            records.append({"locale": locale, "kind": "field", "field": NEGATIVE_FIELDS[neg], "text": negs[neg],
                            "entities": [], "negatives": [negs[neg]]})
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages-per-locale", type=int, default=150)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--no-fields", action="store_true", help="messages only (the test fixture)")
    args = ap.parse_args()
    json.dump(generate(args.messages_per_locale, args.seed, not args.no_fields), sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
