"""driftline.cli: the ``driftline`` command, assembled from each package's commands.

The top of the import graph: it may import every package, and no package imports it (child
processes are started as ``python -m driftline.cli ...``).

>>> from driftline.cli import main
>>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

from driftline.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
