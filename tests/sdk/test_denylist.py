from __future__ import annotations

import subprocess
import sys

import pytest

from driftline.sdk.denylist import DEFAULT_DENYLIST, Denylist, DenylistConfig, normalize_field_name
from driftline.sdk.errors import ConfigError


@pytest.mark.parametrize("name", ["card_number", "cardNumber", "Card-Number", "CARD_NUMBER", "card number",
                                  "customerCardNumber", "creditcardnumber", "password", "userPassword",
                                  "SSN", "ssn_2", "user_email", "EmailAddress", "e-mail", "APIKey",
                                  "phone", "dob", "IBAN"])
def test_default_denylist_matches_normalised_names(name):
    assert Denylist().matches(name)


@pytest.mark.parametrize("name", ["classname", "plan", "shipping", "age", "country", "tenure_months",
                                  "mailbox", "passengers", "pandas_version"])
def test_no_substring_matches_inside_words(name):
    assert not Denylist().matches(name)


def test_normalize_field_name():
    assert normalize_field_name("cardNumber") == ("card", "number")
    assert normalize_field_name("Card-Number") == ("card", "number")
    assert normalize_field_name("HTTPStatusCode") == ("http", "status", "code")
    assert normalize_field_name("ssn2") == ("ssn", "2")


def test_mask_event_masks_features_and_tags_and_copies_only_then():
    dl = Denylist()
    event = {"type": "prediction", "features": {"cardNumber": "4111111111111111", "age": 41, "ssn": 536228714,
                                                "password": None},
             "tags": {"user_email": "ann@example.org", "region": "eu"}}
    out = dl.mask_event(event)
    assert out["features"] == {"cardNumber": "[REDACTED]", "age": 41, "ssn": "[REDACTED]", "password": None}
    assert out["tags"] == {"user_email": "[REDACTED]", "region": "eu"}
    assert event["features"]["cardNumber"] == "4111111111111111"  # the caller's dict is untouched
    clean = {"type": "prediction", "features": {"age": 41}, "tags": {"region": "eu"}}
    assert dl.mask_event(clean) is clean


def test_configurable_list_and_mask():
    dl = Denylist(DenylistConfig(extra_fields=("mother's maiden name",), mask="***"))
    assert dl.matches("mothersMaidenName")  # spelled-together form of "mother s maiden name"
    assert dl.matches("mother_s_maiden_name")
    only = Denylist(fields=["token"], mask="x")
    assert only.matches("authToken") and not only.matches("password")
    assert only.mask_event({"features": {"token": "abc"}})["features"] == {"token": "x"}


def test_config_from_mapping_is_strict():
    cfg = DenylistConfig.from_mapping({"extra_fields": ["employee id"], "mask": "#"})
    assert cfg.fields == DEFAULT_DENYLIST and cfg.extra_fields == ("employee id",)
    assert Denylist(cfg).matches("employeeId")
    with pytest.raises(ConfigError, match="denylist.extra_field"):
        DenylistConfig.from_mapping({"extra_field": ["x"]})
    with pytest.raises(ConfigError, match="denylist.fields"):
        DenylistConfig.from_mapping({"fields": "password"})


def test_sdk_denylist_stays_light():
    code = ("import sys, driftline.sdk.denylist as d\n"
            "d.Denylist().mask_event({'features': {'ssn': '1'}})\n"
            "heavy = [m for m in ('numpy', 'presidio_analyzer', 'spacy', 'pandas', 'prometheus_client') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
