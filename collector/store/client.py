"""The one way to open ClickHouse: clickhouse-connect clients from a URL, the same for the
embedded store and a real server.

``DRIFTLINE_CLICKHOUSE_URL`` looks like ``http://user:password@host:8123`` (``https://`` for TLS);
special characters in the user or password are URL-escaped (``%40`` for ``@``) and decoded here.
Read-only clients pass ClickHouse's own ``readonly=2`` setting with every query, so ClickHouse
itself refuses writes (the SQL console and ``driftline sql`` never match strings).

Every component (collector, ``driftline up``, detectors CLI, alerting, dashboard, ``driftline sql``
and ``delete``) picks its URL with :func:`resolve_url` at its entry point and opens it with
:func:`connect`.

>>> resolve_url(None, {})
'http://127.0.0.1:8123'
>>> parse_url("http://ann:p%40ss@db:8123")["password"]
'p@ss'
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Mapping
from urllib.parse import unquote, urlparse

from driftline.sdk.errors import ConfigError, StoreError

#: where every component looks for ClickHouse when neither a flag nor the environment says
DEFAULT_URL = "http://127.0.0.1:8123"
#: the environment variable every component reads (at its entry point only)
URL_ENV = "DRIFTLINE_CLICKHOUSE_URL"


def resolve_url(flag: str | None, env: Mapping[str, str]) -> str:
    """The URL to use: ``--clickhouse-url`` if given, else ``DRIFTLINE_CLICKHOUSE_URL``, else
    :data:`DEFAULT_URL`. ``env`` is the process environment, passed in by the entry point."""
    return flag or env.get(URL_ENV) or DEFAULT_URL


def parse_url(url: str) -> dict[str, Any]:
    """clickhouse-connect's connection arguments for ``url``; raises ConfigError if malformed."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"ClickHouse URL {url!r} must look like http://host:8123 or https://user:pass@host:8443 "
            "(set DRIFTLINE_CLICKHOUSE_URL or --clickhouse-url)"
        )
    secure = parsed.scheme == "https"
    return {
        "host": parsed.hostname,
        "port": parsed.port or (8443 if secure else 8123),
        "username": unquote(parsed.username) if parsed.username else "default",
        "password": unquote(parsed.password) if parsed.password else "",
        "secure": secure,
    }


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and metrics)."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def connect(url: str, *, readonly: bool = False, settings: dict[str, Any] | None = None,
            retry_for_s: float = 0.0, **kwargs: Any) -> Any:
    """Return a clickhouse-connect client. ``retry_for_s`` waits for a server that is starting."""
    import clickhouse_connect

    params = parse_url(url)
    all_settings = dict(settings or {})
    if readonly:
        # readonly=2: ClickHouse refuses every write and any change of `readonly` itself, but still
        # lets a request set its own limits (max_result_rows, max_execution_time). A real server
        # refuses every per-query setting under readonly=1.
        all_settings["readonly"] = 2
    deadline = time.monotonic() + retry_for_s
    while True:
        try:
            return clickhouse_connect.get_client(
                **params, settings=all_settings, compress=False, autogenerate_session_id=False,
                connect_timeout=5, send_receive_timeout=300, **kwargs,
            )
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def unreachable_message(exc: BaseException, url: str | None = None) -> str:
    """ClickHouse could not be reached: ``url`` without its password, and what to check."""
    where = f" at {redact_url(url)}" if url else ""
    return (f"cannot reach ClickHouse{where} ({type(exc).__name__}): is `driftline up` running, or is "
            "DRIFTLINE_CLICKHOUSE_URL right?")


def error_code(exc: BaseException) -> str:
    """ClickHouse's error code of ``exc`` ("" if none): what a log may say of a store error, whose
    message could quote a stored value."""
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    message = str(exc)
    at = message.find("Code: ")
    if at < 0:
        return ""
    return "".join(ch for ch in message[at + 6:at + 12] if ch.isdigit())


def store_error_message(exc: BaseException, url: str | None = None) -> str | None:
    """One line for a clickhouse-connect error (``None`` for any other): unreachable, with ``url``
    without its password, or ClickHouse's first line. For command-line entry points."""
    try:
        from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
    except ModuleNotFoundError:  # a light install: no store client, so no store error either
        return None
    if isinstance(exc, OperationalError):
        return unreachable_message(exc, url)
    if isinstance(exc, ClickHouseError):
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    return None


@contextlib.contextmanager
def store_errors(url: str) -> Iterator[None]:
    """clickhouse-connect's errors inside the block as :class:`StoreError` (:func:`store_error_message`)."""
    try:
        yield
    except Exception as exc:
        message = store_error_message(exc, url)
        if message is None:
            raise
        raise StoreError(message) from None


__all__ = ["DEFAULT_URL", "URL_ENV", "connect", "parse_url", "redact_url", "resolve_url",
           "store_error_message", "store_errors", "unreachable_message"]
