"""Content codings (RFC 9110 section 8.4): a decoded *copy* of a body, for extraction only.

The sidecar forwards every body exactly as it arrived -- bytes and ``Content-Encoding`` header --
and answers with the upstream's bytes untouched; only the copy that extraction reads is decoded
here. The server side therefore runs with aiohttp's ``auto_decompress`` off
(:data:`driftline.sdk.sidecar.app.SERVER_OPTIONS`): otherwise the request body would reach the
proxy already inflated while its header still said ``gzip``.

Decoding is bounded (``limit_bytes`` of output) so that a small compressed body cannot inflate
into gigabytes inside the sidecar.

>>> import gzip
>>> decode_body(gzip.compress(b'{"a": 1}'), "gzip", limit_bytes=1024)
(b'{"a": 1}', None)
>>> decode_body(b"...", "br", limit_bytes=1024)
(None, "content-encoding 'br' is not decoded for extraction (gzip, deflate and identity are)")
"""

from __future__ import annotations

import zlib

DECODED = ("gzip", "x-gzip", "deflate", "identity")


def _inflate(data: bytes, wbits: int, limit_bytes: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit_bytes + 1)
    if len(out) > limit_bytes:
        raise OverflowError
    if not d.eof:
        raise zlib.error("truncated stream")
    return out


def _decode_one(data: bytes, coding: str, limit_bytes: int) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return _inflate(data, 16 + zlib.MAX_WBITS, limit_bytes)
    # RFC 9110 "deflate" is the zlib format; some clients send a raw deflate stream instead.
    try:
        return _inflate(data, zlib.MAX_WBITS, limit_bytes)
    except zlib.error:
        return _inflate(data, -zlib.MAX_WBITS, limit_bytes)


def decode_body(data: bytes, content_encoding: str | None, *, limit_bytes: int) -> tuple[bytes | None, str | None]:
    """``(decoded bytes, None)``, or ``(None, reason)`` when the body cannot be decoded. Never raises.

    Codings listed in ``Content-Encoding`` were applied in order, so they are undone in reverse.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in DECODED:
            return None, (f"content-encoding {coding!r:.40} is not decoded for extraction "
                          "(gzip, deflate and identity are)")
        try:
            data = _decode_one(data, coding, limit_bytes)
        except OverflowError:
            return None, f"{coding} body decodes to more than {limit_bytes} bytes"
        except zlib.error:
            return None, f"{coding} body is not a valid {coding} stream"
    return data, None
