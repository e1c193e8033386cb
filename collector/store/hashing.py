"""Keyed hashes of values as stored: the form a ``hash``-policy value takes in ClickHouse.

The PII scrubber (``collector/scrub.py``) writes them; ``driftline delete --where`` hashes its
string literals the same way to find those rows. Both read the one HMAC key with
:func:`load_hash_key`. It lives with the store, below both, so that deletion does not import the
scrub stage.

>>> hash_value(b"k" * 16, "u-42")
'hmac:64e8652046d37ec536298ee2f9935719'
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Mapping

from driftline.sdk.errors import ConfigError

__all__ = ["HASH_KEY_ENV", "MIN_KEY_BYTES", "hash_value", "load_hash_key"]

HASH_KEY_ENV = "DRIFTLINE_PII_HASH_KEY"
MIN_KEY_BYTES = 16


def hash_value(key: bytes, value: str) -> str:
    """The stored form of a ``hash``-policy value: ``hmac:`` + 128 bits of HMAC-SHA256, hex.

    Use it to find rows of a known value, e.g. for ``driftline delete --where``.
    """
    return "hmac:" + hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256").hex()[:32]


def load_hash_key(env: Mapping[str, str], key_file: str | Path | None = None) -> bytes | None:
    """Read the HMAC key from ``key_file`` (wins) or ``env[DRIFTLINE_PII_HASH_KEY]``.

    Call at the process entry point with ``os.environ``. Returns None when neither is set.
    Trailing newlines in the file are ignored. Raises :class:`ConfigError` if the file is
    unreadable or the key shorter than 16 bytes.
    """
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"--pii-key-file: cannot read {key_file}: {exc}") from exc
        where = f"--pii-key-file {key_file}"
    elif env.get(HASH_KEY_ENV):
        key = env[HASH_KEY_ENV].encode("utf-8")
        where = HASH_KEY_ENV
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: the PII hash key must be at least {MIN_KEY_BYTES} bytes")
    return key
