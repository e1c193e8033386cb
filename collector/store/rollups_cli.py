"""``driftline rollups``: check the dashboard's rollups against the raw prediction log, or rebuild them.

    driftline rollups check              # exit 1 if a rollup's count differs from the raw rows'
    driftline rollups check --json
    driftline rollups rebuild --yes      # recompute every rollup from the raw tables

What is compared and why is in ``rollup_check.py`` (:data:`COUNTED`); the collector runs the same
check over the recent hours on its own (``rollup_audit.py``). ``check`` covers every hour.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url, store_errors
from driftline.collector.store.rollup_check import COUNTED, check, missing
from driftline.sdk.errors import StoreError


def _check(args: argparse.Namespace, client: Any) -> int:
    absent = missing(client)
    found = check(client, args.recheck_s, absent)
    if args.json:
        print(json.dumps({"consistent": not found and not absent, "missing": absent, "differences": found}))
        return 1 if found or absent else 0
    for rollup in absent:
        print(f"{rollup} is missing: `driftline rollups rebuild --yes` creates and fills it (or start a collector)")
    if not found and not absent:
        print("rollups consistent with the raw tables: "
              + ", ".join(f"{c.table} → {c.rollup} ({c.what})" for c in COUNTED))
        return 0
    for d in found:
        what = "misses" if d["rollup_rows"] < d["raw"] else "holds more than"
        who = "every model" if d["model"] == "*" else f"model {d['model']!r}"
        print(f"{d['rollup']} {what} {d['table']}: {who}, hour {d['hour']}: "
              f"{d['rollup_rows']} against {d['raw']} {d['counts']}")
    if found:
        print(f"{len(found)} difference{'s' if len(found) != 1 else ''}; `driftline rollups rebuild --yes` "
              "recomputes the rollups from the raw tables (stop the collectors first)")
    return 1


def _rebuild(args: argparse.Namespace, client: Any) -> int:
    from driftline.collector.store import rollups

    if not args.yes:
        print("rebuild truncates every rollup and refills it from the raw tables; rows inserted meanwhile "
              "may be counted twice, so stop the collectors first, then run with --yes", file=sys.stderr)
        return 2
    started = time.monotonic()
    rollups.rebuild(client)
    print(f"rollups rebuilt from the raw tables in {time.monotonic() - started:.1f} s")
    return 0


def _handler(args: argparse.Namespace) -> int:
    url = resolve_url(args.clickhouse_url, os.environ)
    try:
        with store_errors(url):
            return {"check": _check, "rebuild": _rebuild}[args.action](args, connect(url))
    except StoreError as exc:  # 2, not 1: exit 1 of `check` means the rollups differ
        print(f"driftline: {exc}", file=sys.stderr)
        return 2


def register(sub: Any) -> None:
    """Add the ``rollups`` command to the ``driftline`` parser."""
    p = sub.add_parser("rollups", help="check the dashboard's rollups against the raw tables, or rebuild them")
    p.add_argument("action", choices=("check", "rebuild"),
                   help="check: counts per model and hour, exit 1 on a difference; rebuild: recompute all")
    p.add_argument("--yes", action="store_true", help="rebuild: the collectors are stopped, go ahead")
    p.add_argument("--json", action="store_true", help="check: print the differences as JSON")
    p.add_argument("--recheck-s", type=float, default=2.0, metavar="SECONDS",
                   help="check: read a difference again after this long before reporting it (default 2)")
    p.add_argument("--clickhouse-url", help=f"default: DRIFTLINE_CLICKHOUSE_URL or {DEFAULT_URL}")
    p.set_defaults(handler=_handler)
