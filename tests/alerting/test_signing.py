"""HMAC-SHA256 signatures: valid, tampered, expired, wrong secret, malformed."""

from __future__ import annotations

import doctest

import driftline.alerting.signing as signing
from driftline.alerting import verify_signature
from driftline.alerting.signing import sign

BODY = b'{"specversion":"1.0","id":"abc"}'
T = 1_800_000_000


def test_valid_signature_verifies():
    assert verify_signature("s", BODY, sign("s", BODY, T), now=T + 299)


def test_tampered_body_refused():
    h = sign("s", BODY, T)
    assert not verify_signature("s", BODY.replace(b"abc", b"abd"), h, now=T)


def test_tampered_timestamp_refused():
    h = sign("s", BODY, T).replace(f"t={T}", f"t={T + 100}")
    assert not verify_signature("s", BODY, h, now=T + 100)


def test_expired_and_future_signatures_refused():
    h = sign("s", BODY, T)
    assert not verify_signature("s", BODY, h, now=T + 301)
    assert not verify_signature("s", BODY, h, now=T - 301)
    assert verify_signature("s", BODY, h, now=T + 1000, tolerance_s=2000)


def test_wrong_secret_and_malformed_headers_refused():
    h = sign("s", BODY, T)
    assert not verify_signature("other", BODY, h, now=T)
    for bad in ("", None, "garbage", f"t={T}", "v1=abc", f"t=x,v1={h.split('v1=')[1]}"):
        assert not verify_signature("s", BODY, bad, now=T)


def test_rotation_accepts_any_v1():
    old = sign("old", BODY, T).split("v1=")[1]
    h = sign("new", BODY, T) + f",v1={old}"
    assert verify_signature("old", BODY, h, now=T) and verify_signature("new", BODY, h, now=T)


def test_doctests():
    assert doctest.testmod(signing).failed == 0
