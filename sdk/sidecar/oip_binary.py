"""The Open Inference Protocol's binary tensor extension (KServe v2 / Triton), read for extraction.

A body with the header ``Inference-Header-Content-Length: N`` starts with N bytes of the usual JSON
(``{"inputs": [...]}`` in a request, ``{"outputs": [...]}`` in a response); a tensor whose
``parameters`` hold ``binary_data_size`` has no ``data`` there, its bytes follow the JSON instead,
one tensor after the other in the order the JSON lists them. Tensor bytes are the row-major
elements, little-endian: BOOL one byte each, INT8..INT64 and UINT8..UINT64 two's complement /
unsigned, FP16/FP32/FP64 IEEE 754; BYTES elements are each a 4-byte little-endian length followed
by that many bytes.

:func:`parse_binary_body` gives back the JSON document with each binary tensor's ``data`` filled in
as a flat list, so that the rest of extraction reads binary and JSON requests alike.

>>> import json, struct
>>> head = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
...                                "parameters": {"binary_data_size": 8}}]}).encode()
>>> doc = parse_binary_body(head + struct.pack("<2f", 1.5, -2.0), len(head), "inputs")
>>> doc["inputs"][0]["data"]
[1.5, -2.0]
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

HEADER_LENGTH = "Inference-Header-Content-Length"

# datatype -> (struct code, bytes per element); BYTES is length-prefixed and handled apart.
FIXED_SIZE: dict[str, tuple[str, int]] = {
    "BOOL": ("?", 1),
    "INT8": ("b", 1), "INT16": ("h", 2), "INT32": ("i", 4), "INT64": ("q", 8),
    "UINT8": ("B", 1), "UINT16": ("H", 2), "UINT32": ("I", 4), "UINT64": ("Q", 8),
    "FP16": ("e", 2), "FP32": ("f", 4), "FP64": ("d", 8),
}
DATATYPES = (*FIXED_SIZE, "BYTES")


# Internal, not in the error tree (sdk/errors.py): extraction catches it and logs its message as
# the event's error; the request itself is forwarded untouched whatever its body holds.
class BinaryTensorError(ValueError):
    """A binary body that does not follow the extension (internal: extraction reports its message)."""


def header_length(value: str | None) -> int | None:
    """The ``Inference-Header-Content-Length`` value as a byte count, ``None`` when absent."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise BinaryTensorError(f"{HEADER_LENGTH} {text!r:.40} is not a byte count")
    return int(text)


def _elements(shape: Any, name: str) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BinaryTensorError(f"tensor {name!r:.64}: shape {shape!r:.64} is not a list of sizes")
    return math.prod(shape)


def _bytes_elements(raw: bytes, name: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise BinaryTensorError(f"tensor {name!r:.64}: BYTES element length cut off at byte {pos}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise BinaryTensorError(f"tensor {name!r:.64}: BYTES element of {size} bytes runs past the tensor")
        # Lossless for any bytes: invalid UTF-8 shows as \x.. escapes instead of failing the row.
        out.append(raw[pos:pos + size].decode("utf-8", errors="backslashreplace"))
        pos += size
    return out


def decode_tensor(raw: bytes, datatype: str, shape: Any, name: str) -> list[Any]:
    """A binary tensor's elements as a flat list; raises :class:`BinaryTensorError`."""
    n = _elements(shape, name)
    if datatype == "BYTES":
        values: list[Any] = _bytes_elements(raw, name)
    elif datatype in FIXED_SIZE:
        code, width = FIXED_SIZE[datatype]
        if len(raw) != n * width:
            raise BinaryTensorError(f"tensor {name!r:.64}: {len(raw)} bytes for shape {shape} of {datatype} "
                                    f"({n * width} expected)")
        values = list(struct.unpack(f"<{n}{code}", raw))
    else:
        raise BinaryTensorError(f"tensor {name!r:.64}: datatype {datatype!r:.20} is not one of "
                                f"{', '.join(DATATYPES)}")
    if len(values) != n:
        raise BinaryTensorError(f"tensor {name!r:.64}: {len(values)} elements for shape {shape} ({n} expected)")
    return values


def parse_binary_body(body: bytes, header_len: int, tensors_key: str) -> dict[str, Any]:
    """The JSON header of ``body`` with every binary tensor's ``data`` decoded (see the module doc).

    ``tensors_key`` is ``"inputs"`` for a request and ``"outputs"`` for a response. Raises
    :class:`BinaryTensorError` naming the tensor when the body does not add up.
    """
    if header_len > len(body):
        raise BinaryTensorError(f"{HEADER_LENGTH} is {header_len} but the body has {len(body)} bytes")
    try:
        doc = json.loads(body[:header_len])
    except (ValueError, UnicodeDecodeError) as exc:
        raise BinaryTensorError(f"the {header_len}-byte JSON header is not valid JSON "
                                f"({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise BinaryTensorError("the JSON header is not an object")
    tensors = doc.get(tensors_key)
    pos = header_len
    for t in tensors if isinstance(tensors, list) else ():
        if not isinstance(t, dict):
            continue
        params = t.get("parameters")
        if not isinstance(params, dict):
            continue
        name = str(t.get("name"))
        if "shared_memory_region" in params:
            raise BinaryTensorError(f"tensor {name!r:.64} is in shared memory, which the sidecar cannot read")
        size = params.get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BinaryTensorError(f"tensor {name!r:.64}: binary_data_size {size!r:.20} is not a byte count")
        if pos + size > len(body):
            raise BinaryTensorError(f"tensor {name!r:.64}: {size} bytes announced, {len(body) - pos} left in the body")
        t["data"] = decode_tensor(body[pos:pos + size], str(t.get("datatype")), t.get("shape"), name)
        pos += size
    if pos != len(body):
        raise BinaryTensorError(f"{len(body) - pos} bytes after the last binary tensor")
    return doc
