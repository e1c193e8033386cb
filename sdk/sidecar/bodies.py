"""Bodies as extraction reads them: a decoded copy (content coding, OIP binary header length).

The proxy forwards and answers the original bytes; only these copies are decoded. No aiohttp here:
the event worker process (:mod:`driftline.sdk.sidecar.event_worker`) imports this module too.

>>> import gzip
>>> readable_parts(gzip.compress(b'{"a": 1}'), "gzip", None, 1024)
Readable(data=b'{"a": 1}', header_len=None, error=None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from driftline.sdk.codec import loads_as_stdlib
from driftline.sdk.sidecar.encoding import decode_body
from driftline.sdk.sidecar.extraction import ExtractSpec, Row, extract, get_path
from driftline.sdk.sidecar.oip_binary import HEADER_LENGTH, BinaryTensorError, header_length, parse_binary_body


@dataclass(frozen=True)
class Readable:
    """A body as extraction reads it: decoded from its content coding, with the binary header length."""

    data: bytes | None
    header_len: int | None = None
    error: str | None = None


def readable_parts(data: bytes | None, encoding: str | None, header_len_value: str | None,
                   limit_bytes: int) -> Readable:
    """The decoded copy of a body, from its ``Content-Encoding`` and ``Inference-Header-Content-Length``."""
    if not data or (encoding is None and header_len_value is None):
        return Readable(data)
    decoded, error = decode_body(data, encoding, limit_bytes=limit_bytes)
    try:
        header_len = header_length(header_len_value)
    except BinaryTensorError as exc:
        return Readable(None, None, str(exc))
    return Readable(decoded, header_len, error)


def readable(data: bytes | None, headers: Mapping[str, str], limit_bytes: int) -> Readable:
    """The decoded copy of a request or response body for extraction (the original is never changed)."""
    return readable_parts(data, headers.get("Content-Encoding"), headers.get(HEADER_LENGTH), limit_bytes)


def extract_rows(spec: ExtractSpec, request: Readable, response: Readable | None) -> tuple[list[Row], str | None]:
    """:func:`~driftline.sdk.sidecar.extraction.extract` over decoded copies (``response`` None: no answer)."""
    if request.error is not None:
        return [({}, None)], f"extract: request body: {request.error}"
    if response is not None and response.error is not None:
        rows, err = extract(request.data, None, spec, request_header_len=request.header_len)
        return rows, err or f"extract: response body: {response.error}"
    return extract(request.data, None if response is None else response.data, spec,
                   request_header_len=request.header_len,
                   response_header_len=None if response is None else response.header_len)


def sticky_value(body: Readable, field: str) -> str | None:
    """The value at ``field`` (a dotted path) of a request body, for sticky A/B routing."""
    if body.data is None:
        return None
    try:
        doc = (parse_binary_body(body.data, body.header_len, "inputs") if body.header_len is not None
               else loads_as_stdlib(body.data))
    except ValueError:  # BinaryTensorError and JSONDecodeError alike
        return None
    found = get_path(doc, field)
    return None if found is None else str(found)
