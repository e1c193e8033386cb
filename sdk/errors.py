"""The driftline error tree: every error driftline raises on purpose, in one place.

``DriftlineError``
  ``ConfigError``              -- bad configuration; raised at start-up with what to change.
  ``SchemaError``              -- an event that breaks schema v1; names the field.
  ``UnsafeURLError``           -- an outgoing webhook URL refused by the SSRF check.
  ``StoreError``               -- ClickHouse refused or failed what driftline asked of it:
    ``QueryError``               -- ``driftline sql``: the query failed; ClickHouse's message.
    ``DeletionError``            -- ``driftline delete``: a step failed; which one and why.
    ``DataError``                -- the dashboard: a query failed; what the page shows.
  ``ChStoreError``             -- the embedded ClickHouse store could not start or stopped.
  ``DeleteRecordsUnsupported`` -- the broker cannot delete records (Tansu's memory engine).
  ``GiveUp``                   -- ``driftline up``: a child keeps crashing right after it starts.

Each error is re-exported where users meet it (``ConfigError``/``SchemaError`` from
``driftline.sdk``, ``DeletionError`` from ``driftline.collector.store``, ...). Exceptions that
never leave driftline (control flow inside one module, such as a body-size limit turned into a
413) stay in their module and say so there. This module imports only the standard library, so
the event contract and the light SDK can depend on it.

>>> from driftline.sdk.errors import ConfigError, DriftlineError
>>> issubclass(ConfigError, DriftlineError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "ChStoreError",
    "ConfigError",
    "DataError",
    "DeleteRecordsUnsupported",
    "DeletionError",
    "DriftlineError",
    "GiveUp",
    "QueryError",
    "SchemaError",
    "StoreError",
    "UnsafeURLError",
]


class DriftlineError(Exception):
    """Base class of every error driftline raises on purpose."""


class ConfigError(DriftlineError, ValueError):
    """Invalid configuration. The message says which setting and what to change."""


class SchemaError(DriftlineError, ValueError):
    """An event does not follow schema v1.

    ``field`` is a dotted path such as ``features.age`` or ``prediction``; ``reason`` says why.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnsafeURLError(DriftlineError, ValueError):
    """A URL that driftline refuses to send to; the message says why."""


class StoreError(DriftlineError):
    """ClickHouse refused or failed a request driftline made; the message says which and why."""


class QueryError(StoreError):
    """``driftline sql``: ClickHouse refused or failed the query; the message is ClickHouse's."""


class DeletionError(StoreError):
    """The deletion failed; the message says which step and ClickHouse's reason."""


class DataError(StoreError):
    """The dashboard: ClickHouse is unreachable or refused a query; ``message`` is what the page
    shows, ``code`` ClickHouse's error name (or ``UNREACHABLE``), ``hint`` what to do."""

    def __init__(self, message: str, *, code: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


class ChStoreError(DriftlineError):
    """The embedded store could not start or stopped unexpectedly."""


class DeleteRecordsUnsupported(DriftlineError, RuntimeError):
    """The broker does not implement DeleteRecords (Tansu's memory engine drops the connection)."""


class GiveUp(DriftlineError):
    """A child of ``driftline up`` keeps crashing right after it starts; restarting it again would
    not help."""
