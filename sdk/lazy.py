"""Lazy public surfaces: a package lists its exports, each imported on first use.

Importing one submodule of ``driftline.collector`` must not pull in aiokafka, Presidio and chDB; a
package ``__init__`` built with :func:`lazy_exports` keeps ``__all__`` explicit (STYLE point 1)
and imports a name's module only when the name is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each public name to the module defining it (a full dotted path).
    """
    names = sorted(exports)

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def dir_() -> list[str]:
        return names

    return names, getattr_, dir_
