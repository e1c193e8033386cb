"""``driftline sidecar`` and ``driftline serve``: command-line entry points.

Importing this module is cheap (argparse only); aiohttp and the server modules load when a
command runs, so ``driftline --help`` works on a light SDK install.

Secrets: bearer tokens are read from an env variable (``DRIFTLINE_SIDECAR_TOKENS``,
``DRIFTLINE_SIDECAR_ADMIN_TOKENS``) or a file (``--tokens-file``), never from a flag, because
flags show up in ``ps`` output, shell history and process-manager logs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any, Mapping

from driftline.sdk.errors import ConfigError

logger = logging.getLogger("driftline.sidecar")


def _common(p: argparse.ArgumentParser, *, port: int) -> None:
    p.add_argument("--model", required=True, help="model name carried by every event")
    p.add_argument("--version", default="", help="model version carried by every event")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    p.add_argument("--shadow", action="append", default=[], metavar="[NAME=]URL[@VERSION]",
                   help="mirror each request to this shadow upstream (repeatable); its events carry "
                   "variant shadow (or shadow:NAME) and model version VERSION (default: --version)")
    p.add_argument("--shadow-sample", type=float, default=1.0, help="fraction of requests mirrored (0-1)")
    p.add_argument("--shadow-concurrency", type=int, default=64, help="shadow calls in flight per shadow")
    p.add_argument("--shadow-timeout", type=float, default=10.0, help="seconds before a shadow call is abandoned")
    p.add_argument("--split-file", help="YAML/JSON A/B or canary split, watched for changes")
    p.add_argument("--timeout", type=float, default=30.0, help="upstream/model timeout in seconds (then 504)")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="upstream connect timeout in seconds")
    p.add_argument("--max-body", default="10MB", help="request body limit, e.g. 1MB (then 413)")
    p.add_argument("--tokens-file", help="file of bearer tokens (name:secret per line); also "
                   "$DRIFTLINE_SIDECAR_TOKENS. No tokens: auth off")
    p.add_argument("--admin-tokens-file", help="tokens for /admin (default: the same tokens); "
                   "also $DRIFTLINE_SIDECAR_ADMIN_TOKENS")
    p.add_argument("--rate-limit", type=float, help="requests per second per token (then 429)")
    p.add_argument("--rate-burst", type=int, help="bucket size of the rate limit (default: one second's worth)")
    p.add_argument("--log-path", action="append", default=[], metavar="GLOB",
                   help="only requests to these paths become events (default: every POST)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag added to every event")
    p.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers (default $DRIFTLINE_KAFKA_BOOTSTRAP)")
    p.add_argument("--no-access-log", action="store_true", help="turn the access log off")
    from driftline.sdk.sidecar.config import DEFAULT_METRICS_PATH  # no aiohttp: --help stays light

    p.add_argument("--metrics-path", default=DEFAULT_METRICS_PATH,
                   help=f"path of the sidecar's own Prometheus metrics (default {DEFAULT_METRICS_PATH}; "
                   "/metrics is the upstream's and is proxied)")
    p.add_argument("--metrics-port", type=int, help="serve the sidecar's metrics on this port instead")


def register(subparsers: Any) -> None:
    """Add the ``sidecar`` and ``serve`` commands to the ``driftline`` CLI."""
    p = subparsers.add_parser("sidecar", help="reverse proxy that logs a model server's predictions",
                              description="Put any HTTP model server behind driftline: every request "
                              "becomes a prediction event; shadows, A/B splits, auth, rate limits, its own metrics.")
    p.add_argument("--upstream", required=True, help="URL of the model server, e.g. http://127.0.0.1:9000")
    _common(p, port=8080)
    p.add_argument("--extract", default="auto", choices=("auto", "flat", "instances", "v2", "path"),
                   help="how request/response bodies map to features and predictions")
    p.add_argument("--features-path", help="dotted path to the features, e.g. payload.rows")
    p.add_argument("--prediction-path", help="dotted path to the prediction, e.g. result.scores")
    p.add_argument("--prediction-output", help="v2 output to log (default: the first)")
    p.add_argument("--feature-names", help="comma-separated names for list-shaped rows")
    p.set_defaults(handler=run_sidecar_command)

    s = subparsers.add_parser("serve", help="serve a joblib/pickle/ONNX model file over HTTP, monitored",
                              description="Serve a Python model file with /predict, the v2 inference "
                              "protocol, health checks, input validation and every sidecar feature.")
    s.add_argument("path", help="model file: .joblib, .pkl/.pickle, or .onnx (needs onnxruntime)")
    _common(s, port=8000)
    s.add_argument("--sample", help="JSON sample input to infer the input schema from")
    s.add_argument("--schema", help="JSON Schema of one input row")
    s.add_argument("--workers", type=int, default=1, help="threads running predict")
    s.set_defaults(handler=run_serve_command)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str], *, upstream: str) -> Any:
    """Flags + env -> :class:`SidecarSettings` (every check happens here, at start-up)."""
    from driftline.sdk.sidecar.config import (DEFAULT_ADMIN_TOKENS_ENV, DEFAULT_TOKENS_ENV, SidecarSettings,
                                              parse_shadow, parse_size, parse_tags)
    from driftline.sdk.sidecar.extraction import ExtractSpec
    from driftline.sdk.sidecar.hygiene import load_tokens

    tokens = load_tokens(env=env, env_var=DEFAULT_TOKENS_ENV, path=args.tokens_file)
    admin = None
    if args.admin_tokens_file or env.get(DEFAULT_ADMIN_TOKENS_ENV):
        admin = load_tokens(env=env, env_var=DEFAULT_ADMIN_TOKENS_ENV, path=args.admin_tokens_file)
    extract = ExtractSpec()
    if getattr(args, "extract", None):
        names = tuple(n.strip() for n in (args.feature_names or "").split(",") if n.strip())
        extract = ExtractSpec(mode=args.extract, features_path=args.features_path,
                              prediction_path=args.prediction_path, prediction_output=args.prediction_output,
                              feature_names=names)
    return SidecarSettings(
        upstream=upstream.rstrip("/"), model=args.model, version=args.version, host=args.host, port=args.port,
        shadows=tuple(parse_shadow(s, i) for i, s in enumerate(args.shadow)), shadow_sample=args.shadow_sample,
        shadow_concurrency=args.shadow_concurrency, shadow_timeout_s=args.shadow_timeout,
        split_file=args.split_file, timeout_s=args.timeout, connect_timeout_s=args.connect_timeout,
        max_body_bytes=parse_size(args.max_body), tokens=tokens, admin_tokens=admin,
        rate_limit_rps=args.rate_limit, rate_limit_burst=args.rate_burst, extract=extract,
        log_paths=tuple(args.log_path), access_log=not args.no_access_log, tags=parse_tags(args.tag),
        metrics_path=args.metrics_path, metrics_port=args.metrics_port)


def _sdk_settings(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from driftline.sdk.config import SdkSettings

    overrides = {"kafka_bootstrap": args.kafka_bootstrap} if args.kafka_bootstrap else {}
    return SdkSettings.from_env(env, **overrides)


def use_uvloop() -> bool:
    """Use uvloop when it is installed (measured faster in bench/bench_sidecar.py)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(settings: Any, sdk_settings: Any, *, local: Any = None) -> int:
    """Run the sidecar (or ``serve`` with ``local``) until SIGINT/SIGTERM; then flush events."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from driftline.sdk.sidecar.app import SERVER_OPTIONS, build_app
    from driftline.sdk.sidecar.event_process import WorkerConfig
    from driftline.sdk.sidecar.event_worker import EventWorker
    from driftline.sdk.sidecar.hygiene import AccessLogger
    from driftline.sdk.sidecar.metrics import SidecarMetrics
    from driftline.sdk.sidecar.routing import SplitConfig

    metrics = SidecarMetrics(CollectorRegistry())
    # Events are built and exported by a child process: nothing of it runs beside the event loop.
    worker = EventWorker(WorkerConfig.from_settings(settings, sdk_settings), metrics)

    split = SplitConfig.load(settings.split_file) if settings.split_file else SplitConfig.single(settings.upstream)
    app = build_app(settings, events=worker, metrics=metrics, split=split, local=local)
    access = logging.getLogger("driftline.sidecar.access")
    if settings.access_log and not access.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    uv = use_uvloop()
    logging.getLogger("driftline.sidecar").warning(
        "driftline %s listening on http://%s:%d (%s; uvloop=%s; events to %s)",
        "serve" if local is not None else "sidecar", settings.host, settings.port,
        ", ".join(f"{k}={v}" for k, v in settings.public_dict().items() if k != "listen"), uv,
        sdk_settings.kafka_bootstrap)
    # lingering_time: an oversized body is answered 413 at once; reading its rest to let the
    # client see the answer is bounded to 2 s instead of aiohttp's 10 s. SIGINT/SIGTERM end
    # run_app, whose cleanup drains the event worker (EventWorker.stop).
    web.run_app(app, host=settings.host, port=settings.port, access_log=access if settings.access_log else None,
                access_log_class=AccessLogger, print=None, lingering_time=2.0, shutdown_timeout=10.0,
                **SERVER_OPTIONS)
    return 0


def run_sidecar_command(args: argparse.Namespace) -> int:
    env = os.environ
    settings = settings_from_args(args, env, upstream=args.upstream)
    return run(settings, _sdk_settings(args, env))


def run_serve_command(args: argparse.Namespace) -> int:
    from driftline.sdk.sidecar.input_schema import InputSchema
    from driftline.sdk.sidecar.serve import ModelBackend, load_model

    env = os.environ
    settings = settings_from_args(args, env, upstream="local:")
    schema = InputSchema.load(sample_path=args.sample, schema_path=args.schema)
    model = load_model(args.path)  # at start-up: a bad file fails the command, not the first request
    if schema is None and InputSchema.from_model(model) is None:
        raise ConfigError(f"cannot infer the input schema of {args.path}: pass --sample or --schema")
    local = ModelBackend(args.path, name=settings.model, version=settings.version, schema=schema, model=model,
                         workers=args.workers)
    return run(settings, _sdk_settings(args, env), local=local)
