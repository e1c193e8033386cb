"""``driftline sql "SELECT ..."``: query the prediction log, read-only, as a table, CSV or JSON.

Read-only is ClickHouse's own ``readonly`` setting sent with the query, so ClickHouse refuses
INSERT, ALTER, DROP and friends itself; no statement is matched against strings here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence
from uuid import UUID

from driftline.collector.store.client import DEFAULT_URL, connect, resolve_url, unreachable_message
from driftline.sdk.errors import ConfigError, QueryError


def _cell(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value]
    return value


def run_query(url: str, sql: str, *, max_rows: int = 10_000, max_execution_time_s: int = 60) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        client = connect(url, readonly=True)
    except ModuleNotFoundError:
        raise  # a light install: the command line says which extra is missing
    except Exception as exc:
        raise QueryError(unreachable_message(exc, url)) from None
    try:
        result = client.query(sql, settings={"max_result_rows": max_rows, "result_overflow_mode": "break",
                                             "max_execution_time": max_execution_time_s})
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise QueryError(message[0] if message else type(exc).__name__) from None
    return list(result.column_names), [tuple(_cell(v) for v in row) for row in result.result_rows]


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    def text(v: Any) -> str:
        s = json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else ("NULL" if v is None else str(v))
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cells = [[text(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths)), line]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _handler(args: argparse.Namespace) -> int:
    url = resolve_url(args.clickhouse_url, os.environ)
    sql = args.query
    if sql == "-":
        sql = sys.stdin.read()
    if not sql.strip():
        raise ConfigError("no query given: driftline sql \"SELECT count() FROM driftline.predictions\"")
    columns, rows = run_query(url, sql, max_rows=args.max_rows)
    if args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([json.dumps(v) if isinstance(v, (dict, list)) else v for v in row])
    elif args.format == "json":
        json.dump([dict(zip(columns, row)) for row in rows], sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(columns, rows))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query on the prediction log")
    p.add_argument("query", help='SQL, e.g. "SELECT model, count() FROM driftline.predictions GROUP BY model"; - reads stdin')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=int, default=10_000, help="ClickHouse stops after this many rows")
    p.add_argument("--clickhouse-url", help=f"default: DRIFTLINE_CLICKHOUSE_URL or {DEFAULT_URL}")
    p.set_defaults(handler=_handler)
