"""Content codings: the decoded copy extraction reads (the forwarded bytes are tested in test_proxy)."""

from __future__ import annotations

import gzip
import zlib

from driftline.sdk.sidecar.encoding import decode_body

BODY = b'{"instances": [{"a": 1}, {"a": 2}]}'


def test_gzip_deflate_raw_deflate_and_identity_decode_to_the_same_bytes() -> None:
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = raw_deflate.compress(BODY) + raw_deflate.flush()
    for data, coding in ((gzip.compress(BODY), "gzip"), (gzip.compress(BODY), "X-GZIP"),
                         (zlib.compress(BODY), "deflate"), (raw, "deflate"), (BODY, "identity"), (BODY, None),
                         (BODY, "")):
        assert decode_body(data, coding, limit_bytes=1024) == (BODY, None), coding


def test_stacked_codings_are_undone_in_reverse_order() -> None:
    data = gzip.compress(zlib.compress(BODY))  # deflate applied first, then gzip
    assert decode_body(data, "deflate, gzip", limit_bytes=1024) == (BODY, None)


def test_unknown_coding_corrupt_stream_and_bomb_give_a_reason_never_an_exception() -> None:
    data, err = decode_body(b"xx", "br", limit_bytes=1024)
    assert data is None and err is not None and "'br' is not decoded" in err
    data, err = decode_body(b"not gzip at all", "gzip", limit_bytes=1024)
    assert data is None and err == "gzip body is not a valid gzip stream"
    data, err = decode_body(gzip.compress(BODY)[:-12], "gzip", limit_bytes=1024)  # truncated
    assert data is None and err == "gzip body is not a valid gzip stream"
    bomb = gzip.compress(b"0" * 1_000_000)  # ~1 kB that inflates to 1 MB
    data, err = decode_body(bomb, "gzip", limit_bytes=64 * 1024)
    assert data is None and err == "gzip body decodes to more than 65536 bytes"
