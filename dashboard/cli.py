"""``driftline dashboard``: run the Streamlit app headless, with usage statistics off.

Streamlit's settings go on the command line (and in the environment) rather than in a
``.streamlit/config.toml``, so nothing depends on the working directory and no telemetry or
browser launch can be switched back on by a stray config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping

APP = Path(__file__).resolve().parent / "app.py"

STREAMLIT_FLAGS: tuple[str, ...] = (
    "--server.headless", "true",
    "--browser.gatherUsageStats", "false",
    "--global.developmentMode", "false",
    "--server.fileWatcherType", "none",
    "--server.runOnSave", "false",
    "--client.toolbarMode", "minimal",
    "--theme.base", "light",
)


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The argv that serves the dashboard on ``host:port``."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
            "--server.address", host, *STREAMLIT_FLAGS]


def environment(clickhouse_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({"DRIFTLINE_CLICKHOUSE_URL": clickhouse_url,
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
                "STREAMLIT_SERVER_HEADLESS": "true"})
    return env


def _handler(args: argparse.Namespace) -> int:
    from driftline.dashboard.auth import load_token
    from driftline.collector.store.client import parse_url, resolve_url
    from driftline.sdk.errors import ConfigError

    import streamlit  # noqa: F401 - fail here with the server-extra message if missing

    url = resolve_url(args.clickhouse_url, os.environ)
    parse_url(url)  # a malformed URL is a start-up error, not a page error
    token = load_token()
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"driftline dashboard: warning: serving on {args.host} without access control; "
              "set DRIFTLINE_DASHBOARD_TOKEN (or DRIFTLINE_DASHBOARD_TOKEN_FILE)", file=sys.stderr)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is out of range 1..65535")
    argv = command(args.port, args.host)
    print(f"driftline dashboard: http://{args.host}:{args.port} (ClickHouse {url.split('@')[-1]}, read-only)",
          file=sys.stderr, flush=True)
    # exec: `driftline up` stops the dashboard with SIGTERM, which must reach Streamlit itself.
    os.execve(argv[0], argv, environment(url))
    return 0  # pragma: no cover


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="serve the Streamlit dashboard (reads ClickHouse only)")
    p.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    from driftline.collector.store.client import DEFAULT_URL

    p.add_argument("--clickhouse-url", help="http://user:pass@host:8123 (env DRIFTLINE_CLICKHOUSE_URL, "
                   f"default {DEFAULT_URL})")
    p.set_defaults(handler=_handler)
