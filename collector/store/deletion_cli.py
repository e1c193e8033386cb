"""``driftline delete``: remove a person's rows from the prediction log, with an audit record.

    driftline delete --prediction-id 0190b7d2-8f3a-7c1e-9d2a-3b4c5d6e7f81
    driftline delete --where "tags['user_id'] = 'u-42'" --optimize
    driftline delete --where "tags['user_id'] = 'u-42'" --dry-run

Prints the rows deleted per table. See :mod:`driftline.collector.store.deletion` for what is matched
and when the bytes leave the disk.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Any

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url, store_errors


def _handler(args: argparse.Namespace) -> int:
    from driftline.collector.store.deletion import delete_rows
    from driftline.collector.store.hashing import load_hash_key

    url = resolve_url(args.clickhouse_url, os.environ)
    key = load_hash_key(os.environ, args.pii_key_file)
    try:
        user = args.requested_by or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    with store_errors(url):
        report = delete_rows(
            connect(url), prediction_ids=tuple(args.prediction_id or ()), where=args.where, requested_by=user,
            mode="lightweight" if args.lightweight else "mutation", optimize=args.optimize,
            dry_run=args.dry_run, hash_key=key,
        )
    if args.json:
        print(json.dumps({"deletion_id": report.deletion_id, "dry_run": report.dry_run,
                          "counts": dict(report.counts), "predicate": report.predicate,
                          "predicate_skipped": list(report.predicate_skipped)}))
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    for table, n in report.counts.items():
        print(f"{table}: {verb} {n} row{'s' if n != 1 else ''}")
    if report.predicate_skipped:
        print(f"(--where does not apply to {', '.join(report.predicate_skipped)}; only rows linked to "
              "the deleted predictions were matched there)")
    if not report.dry_run:
        print(f"audit: driftline.deletions deletion_id = {report.deletion_id}")
        if not args.optimize:
            print("note: run with --optimize (OPTIMIZE TABLE ... FINAL) to rewrite data parts now; old parts "
                  "leave the disk after old_parts_lifetime (480 s by default)")
    return 0


def register(sub: Any) -> None:
    """Add the ``delete`` command to the ``driftline`` parser."""
    p = sub.add_parser("delete", help="delete rows of predictions (and their labels/outcomes) on request")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--prediction-id", action="append", metavar="UUID",
                        help="a prediction's event_id (repeatable)")
    target.add_argument("--where", metavar="PREDICATE",
                        help="ClickHouse predicate on driftline.predictions, e.g. \"tags['user_id'] = 'u-42'\"")
    p.add_argument("--requested-by", help="who asked (recorded in driftline.deletions); default: OS user")
    p.add_argument("--lightweight", action="store_true",
                   help="use lightweight DELETE (rows hidden at once, purged by later merges) "
                        "instead of ALTER TABLE ... DELETE")
    p.add_argument("--optimize", action="store_true",
                   help="run OPTIMIZE TABLE ... FINAL afterwards to rewrite data parts now")
    p.add_argument("--dry-run", action="store_true", help="count matching rows, delete nothing")
    p.add_argument("--pii-key-file", help="PII HMAC key, to record predicate literals as hashes "
                                          "(default: DRIFTLINE_PII_HASH_KEY)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--clickhouse-url", help=f"default: DRIFTLINE_CLICKHOUSE_URL or {DEFAULT_URL}")
    p.set_defaults(handler=_handler)
