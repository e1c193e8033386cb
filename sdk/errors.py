"""The driftline error tree.

``DriftlineError``
  ``ConfigError``   -- bad configuration; raised at start-up with what to change.
  ``SchemaError``   -- an event that breaks schema v1; names the field.
"""

from __future__ import annotations


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
