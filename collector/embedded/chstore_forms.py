"""``multipart/form-data`` request bodies of ClickHouse's HTTP interface.

A real server reads the query, its ``param_*`` bind parameters and settings from the fields of
a multipart body as it reads them from the URL; clickhouse-connect sends bind parameters that
way once they pass ~4 KB urlencoded (``MAX_URL_BIND_PARAM_LENGTH`` in its ``binding.py``), and
curl does with ``-F 'query=...' -F 'param_x=...'``. Parts with a ``filename`` are external data
(temporary tables), which the embedded store does not implement: they get a clear error.

>>> body = (b'--b\\r\\nContent-Disposition: form-data; name="query"\\r\\n\\r\\nSELECT {n:UInt8}\\r\\n'
...         b'--b\\r\\nContent-Disposition: form-data; name="param_n"\\r\\n\\r\\n7\\r\\n--b--\\r\\n')
>>> parse_form('multipart/form-data; boundary=b', body)
{'query': 'SELECT {n:UInt8}', 'param_n': '7'}
"""

from __future__ import annotations

from email.message import Message

from driftline.collector.embedded.chstore_engine import ChError

__all__ = ["is_form", "parse_form"]


def _header_params(value: str, header: str) -> Message:
    msg = Message()
    msg[header] = value
    return msg


def is_form(content_type: str) -> bool:
    """True for a ``multipart/form-data`` body (a urlencoded body is SQL, as on a real server:
    curl's ``-d 'SELECT 1'`` sends that content type)."""
    return content_type.strip().lower().startswith("multipart/form-data")


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart body by name (a later field of the same name wins)."""
    boundary = _header_params(content_type, "Content-Type").get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ChError(36, "Code: 36. DB::Exception: multipart/form-data without a boundary. (BAD_ARGUMENTS)")
    delimiter = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    # A delimiter is CRLF + "--" + boundary; the first one may open the body without the CRLF.
    parts = (b"\r\n" + body).split(b"\r\n" + delimiter)
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        raise ChError(36, "Code: 36. DB::Exception: Unexpected end of multipart/form-data body. (BAD_ARGUMENTS)")
    for part in parts[1:-1]:  # before the first delimiter: preamble; after the last: epilogue
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise ChError(36, "Code: 36. DB::Exception: multipart/form-data part without headers. (BAD_ARGUMENTS)")
        disposition = ""
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value.strip()
        msg = _header_params(disposition, "Content-Disposition")
        name = msg.get_param("name", header="Content-Disposition")
        if not isinstance(name, str) or not name:
            raise ChError(36, "Code: 36. DB::Exception: multipart/form-data part without a name. (BAD_ARGUMENTS)")
        if msg.get_param("filename", header="Content-Disposition") is not None:
            raise ChError(48, f"Code: 48. DB::Exception: External data (file part '{name}') is not supported "
                          "by the embedded store; use a real ClickHouse server for external tables. "
                          "(NOT_IMPLEMENTED)")
        fields[name] = content.decode("utf-8")
    return fields
