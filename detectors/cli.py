"""``driftline reference ...``: set, list and delete references in ClickHouse.

Wire into the main CLI with ``register(subparsers)``; each command takes ``--clickhouse-url``
(default: ``DRIFTLINE_CLICKHOUSE_URL``, else ``http://127.0.0.1:8123``; URL-escaped passwords are
decoded)::

    driftline reference set --model churn --version v3 --file train.parquet [--prediction-column p]
    driftline reference set --model churn --version v3 --file train.parquet --prediction-column p --labels y
    driftline reference set --model churn --version v3 --first-events 5000
    driftline reference set --model churn --version v3 --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z
    driftline reference list [--model churn]
    driftline reference show --model churn --version v3 [--window-size 1000]
    driftline reference delete --model churn --version v3

``set`` and ``show`` say when a reference is smaller than windows of ``--window-size`` events
need (:func:`~driftline.detectors.reference.reference_size_needed`; default: the default window).
``set --labels COLUMN`` also fits the performance estimator on the file's labelled rows (CBPE when
the prediction column holds class probabilities, DLE for a regressor's numbers;
:mod:`driftline.detectors.estimate_fit`) and stores it with the reference; ``show`` says whether
a reference has labels and an estimator, and on how many labelled rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping, TextIO

from driftline.collector.store.client import DEFAULT_URL, URL_ENV
from driftline.detectors.histogram import DEFAULT_MAX_CATEGORIES

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reference`` command group to an argparse subparsers object."""
    ref = subparsers.add_parser("reference", help="manage drift references (baselines)")
    sub = ref.add_subparsers(dest="reference_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--clickhouse-url", default=None,
                       help=f"ClickHouse HTTP URL (env {URL_ENV}, default {DEFAULT_URL})")

    s = sub.add_parser("set", help="build a reference and store it (replaces an existing one)")
    common(s)
    s.add_argument("--model", required=True)
    s.add_argument("--version", required=True, help="model version, or * for every version")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="Parquet or CSV training data")
    src.add_argument("--first-events", type=int, help="the first N logged predictions")
    src.add_argument("--from", dest="start", help="start of a logged time range (RFC 3339)")
    s.add_argument("--to", dest="end", help="end of the time range (with --from)")
    s.add_argument("--prediction-column", help="column holding the model output (--file)")
    s.add_argument("--label-column", help="column holding the true label (--file): left out of the "
                   "features; feature importance is estimated from it when there is no prediction column")
    s.add_argument("--labels", metavar="COLUMN", help="column holding the true label (--file, with "
                   "--prediction-column): also fit the performance estimator (CBPE / DLE) on the "
                   "labelled rows and store it with the reference")
    s.add_argument("--min-labels", type=int, default=200,
                   help="labelled rows the estimator needs at least (--labels; default 200)")
    s.add_argument("--exclude", action="append", default=[], help="column to leave out (repeatable)")
    s.add_argument("--categorical", action="append", default=[], help="numeric column to treat as categories")
    s.add_argument("--bins", type=int, default=20)
    s.add_argument("--max-categories", type=int, default=DEFAULT_MAX_CATEGORIES)

    def sized(p: argparse.ArgumentParser) -> None:
        # No default here: the config module (pydantic) is imported only when a command runs.
        p.add_argument("--window-size", type=int, default=None,
                       help="events per window the reference is for (default: the default window's)")

    sized(s)
    lst = sub.add_parser("list", help="list stored references")
    common(lst)
    lst.add_argument("--model")
    sh = sub.add_parser("show", help="describe one stored reference and whether it is large enough")
    common(sh)
    sh.add_argument("--model", required=True)
    sh.add_argument("--version", required=True)
    sized(sh)
    d = sub.add_parser("delete", help="delete a reference")
    common(d)
    d.add_argument("--model", required=True)
    d.add_argument("--version", required=True)
    ref.set_defaults(func=run)
    return ref


def run(args: argparse.Namespace, out: TextIO = sys.stdout, env: Mapping[str, str] | None = None) -> int:
    """Execute a parsed ``reference`` command; returns the exit code. ``env`` (default: the
    process environment) supplies ``DRIFTLINE_CLICKHOUSE_URL`` when no flag is given."""
    from driftline.collector.store import connect, migrate, resolve_url
    from driftline.detectors import reference as R
    from driftline.detectors.reference_store import ReferenceStore
    from driftline.sdk.errors import ConfigError

    client = connect(resolve_url(args.clickhouse_url, os.environ if env is None else env))
    migrate(client)
    store = ReferenceStore(client)
    from driftline.detectors.config import WindowSettings

    cmd = args.reference_command
    if cmd in ("set", "show"):
        if args.window_size is None:
            args.window_size = WindowSettings().size
        elif args.window_size <= 0:
            print(f"error: --window-size must be positive, got {args.window_size}", file=sys.stderr)
            return 2
    try:
        if cmd == "set":
            kw = {"bins": args.bins, "max_categories": args.max_categories, "categorical": args.categorical}
            if args.labels and (not args.file or not args.prediction_column):
                raise ConfigError("--labels needs --file and --prediction-column: the estimator is fitted "
                                  "on the file's predictions and labels")
            if args.labels and args.label_column and args.labels != args.label_column:
                raise ConfigError(f"--labels {args.labels} and --label-column {args.label_column} differ; give one")
            if args.file:
                ref = R.from_file(args.file, args.model, args.version, exclude=args.exclude,
                                  prediction_column=args.prediction_column,
                                  label_column=args.labels or args.label_column, **kw)
                if args.labels:
                    ref = _with_estimator(ref, args.file, args.prediction_column, args.labels, args.exclude,
                                          args.min_labels)
            else:
                ref = R.from_prediction_log(client, args.model, args.version,
                                            first_n=args.first_events, start=args.start, end=args.end, **kw)
            store.save(ref)
            print(f"reference {args.model} {args.version}: {ref.n_rows} rows, "
                  f"{len(ref.features)} features ({ref.source})", file=out)
            sources = {p.importance_from for p in ref.features.values() if p.importance is not None}
            print(f"feature importance: from the {', '.join(sorted(sources))}" if sources else
                  "feature importance: unknown (no predictions or labels), drifted features are "
                  "ranked by drift magnitude alone", file=out)
            if ref.estimator is not None:
                _print_estimator(ref.estimator, out)
            _print_size(ref.n_rows, args.window_size, out)
        elif cmd == "show":
            ref = store.load(args.model, args.version)
            if ref is None:
                print(f"no reference for {args.model} {args.version}", file=sys.stderr)
                return 1
            print(f"reference {ref.model} {ref.model_version}: {ref.n_rows} rows, {len(ref.features)} "
                  f"features, {len(ref.outputs)} outputs ({ref.source}, created {ref.created_at})", file=out)
            for p in ref.features.values():
                note = f", looks like {p.looks_like}" if p.looks_like else ""
                print(f"  {p.name}\t{p.kind}\t{p.n} present, {p.missing} missing{note}", file=out)
            if ref.estimator is None:
                print("labels: none (no performance estimator; set one with --labels COLUMN)", file=out)
            else:
                _print_estimator(ref.estimator, out)
            _print_size(ref.n_rows, args.window_size, out)
        elif cmd == "list":
            infos = store.list(args.model)
            print("model\tversion\trows\tfeatures\tcreated_at\tsource", file=out)
            for i in infos:
                print(f"{i.model}\t{i.model_version}\t{i.n_rows}\t{i.n_features}\t"
                      f"{i.created_at.isoformat()}\t{i.source}", file=out)
        elif cmd == "delete":
            if not store.delete(args.model, args.version):
                print(f"no reference for {args.model} {args.version}", file=sys.stderr)
                return 1
            print(f"deleted reference {args.model} {args.version}", file=out)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _with_estimator(ref: Any, path: str, prediction_column: str, label_column: str, exclude: list[str],
                    min_labels: int) -> Any:
    """``ref`` with the estimator fitted on the file's labelled rows (its input features: every
    column but the prediction, the label and ``exclude``)."""
    import dataclasses
    from pathlib import Path

    import pandas as pd

    from driftline.detectors.estimate_fit import fit_estimator
    from driftline.detectors.estimation import EstimationError
    from driftline.sdk.errors import ConfigError

    p = Path(path)
    df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    for col in (prediction_column, label_column):
        if col not in df.columns:
            raise ConfigError(f"{p.name} has no column {col!r}")
    labels = [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in df[label_column].tolist()]
    feats = df[[c for c in ref.features if c not in exclude and c in df.columns]]
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in feats.to_dict("records")]
    try:
        info = fit_estimator(df[prediction_column].tolist(), labels, rows, min_labels=min_labels)
    except EstimationError as exc:
        raise ConfigError(f"no performance estimator from {p.name}: {exc}") from None
    return dataclasses.replace(ref, estimator={**info, "source": f"file:{p.name}:{label_column}"})


def _print_estimator(info: Mapping[str, Any], out: TextIO) -> None:
    ref = ", ".join(f"{k} {v:.3f}" for k, v in sorted(info.get("reference_metrics", {}).items()))
    print(f"labels: {info.get('labelled', 0):,} labelled rows; performance estimator "
          f"{str(info.get('method', '?')).upper()} ({info.get('source', '')}); on the reference: {ref}", file=out)


def _print_size(n_rows: int, window_size: int, out: TextIO) -> None:
    from driftline.detectors.reference import reference_size_needed, size_note

    note = size_note(n_rows, window_size)
    if note is None:
        print(f"size: enough for {window_size:,}-event windows "
              f"({reference_size_needed(window_size):,} recommended)", file=out)
    else:
        print(f"warning: {note}: smaller references make every window's verdict noisier "
              "(see reference_size_needed)", file=out)
