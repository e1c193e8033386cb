"""HMAC-SHA256 signatures on webhook deliveries, and their verification for receivers.

Each signed request carries ``X-Driftline-Signature: t=<unix seconds>,v1=<hex>`` where the hex
digest is HMAC-SHA256(secret, ``"<t>." + body``). Signing the timestamp with the body lets a
receiver refuse replays: a captured request stops verifying once ``tolerance_s`` has passed.
Several ``v1=`` entries may appear while a secret is being rotated.

Example, in a receiver (Flask shown; any framework works)::

    from driftline.alerting import verify_signature
    ok = verify_signature(secret, request.get_data(), request.headers["X-Driftline-Signature"])
    if not ok:
        abort(401)
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Driftline-Signature"
DEFAULT_TOLERANCE_S = 300.0


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: float) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    t = int(timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(secret: str | bytes, body: bytes, header: str | None, *,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made less than ``tolerance_s`` ago.

    Comparison is constant-time (:func:`hmac.compare_digest`). A malformed header, a tampered
    body, a wrong secret, or a timestamp outside ``now ± tolerance_s`` all give False.

    >>> h = sign("s3cret", b'{"a":1}', timestamp=1_700_000_000)
    >>> verify_signature("s3cret", b'{"a":1}', h, now=1_700_000_010)
    True
    >>> verify_signature("s3cret", b'{"a":2}', h, now=1_700_000_010)
    False
    >>> verify_signature("s3cret", b'{"a":1}', h, now=1_700_000_400)
    False
    """
    if not header or not isinstance(body, (bytes, bytearray)):
        return False
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        k, _, v = part.strip().partition("=")
        if k == "t" and v.isdigit():
            t = int(v)
        elif k == "v1" and v:
            candidates.append(v)
    if t is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = _digest(secret, t, bytes(body))
    ok = False
    for c in candidates:  # check every entry so timing does not reveal which one matched
        ok |= hmac.compare_digest(expected.encode(), c.encode("ascii", "replace"))
    return ok


__all__ = ["SIGNATURE_HEADER", "sign", "verify_signature"]
