"""The ``driftline`` command line: one parser assembled from each package's commands.

Each command group lives next to the code it drives and adds itself through a ``register``
function; this module only builds the parser, so ``driftline --help`` stays fast and a light
SDK install (no server extra) still gets a clear message instead of a traceback. It sits above
every package in the import graph (tests/test_import_graph.py); no package imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from driftline.sdk.errors import ConfigError, DriftlineError

# (module, human name): modules that define ``register(subparsers)``.
COMMAND_MODULES = (
    ("driftline.collector.embedded.cli", "up, store, demo"),
    ("driftline.cli.collector", "collector"),
    ("driftline.collector.store.sql_cli", "sql"),
    ("driftline.sdk.sidecar.cli", "sidecar, serve"),
    ("driftline.detectors.cli", "reference"),
    ("driftline.collector.store.deletion_cli", "delete"),
    ("driftline.collector.store.rollups_cli", "rollups"),
    ("driftline.alerting.cli", "alerts"),
    ("driftline.dashboard.cli", "dashboard"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Monitoring and observability for machine-learning models in production.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _ in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("driftline"):
                continue  # that command group is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _keep_lifeline()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None) or getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"driftline: configuration error: {exc}", file=sys.stderr)
        return 2
    except DriftlineError as exc:
        print(f"driftline: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        print(f"driftline: {exc.name} is not installed; this command needs the server extra: "
              "pip install 'driftline[server]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _store_error(exc)  # any command's ClickHouse error: one line, not a traceback
        if message is None:
            raise
        print(f"driftline: {message}", file=sys.stderr)
        return 1


def _store_error(exc: BaseException) -> str | None:
    try:
        from driftline.collector.store.client import store_error_message
    except ModuleNotFoundError:  # a build without the collector
        return None
    return store_error_message(exc)


def _keep_lifeline() -> None:
    """A child of ``driftline up`` ends soon after ``up`` dies (collector/embedded/lifeline.py; a build
    without the collector has no ``up``, hence no lifeline)."""
    try:
        from driftline.collector.embedded.lifeline import keep_lifeline
    except ModuleNotFoundError:
        return
    keep_lifeline()
