"""Shared test helpers: drift rows and rules files."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

DRIFT_COLUMNS = ["model", "model_version", "detector", "feature", "segment", "window_start",
                 "window_end", "statistic", "value", "p_value", "threshold", "drift",
                 "reference_size", "current_size", "details"]
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
WINDOW = dt.timedelta(minutes=10)


def unique_model(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def insert_window(client: Any, model: str, i: int, psi: dict[str, float], *, version: str = "v1",
                  segment: str = "", size: int = 1000, t0: dt.datetime = T0) -> None:
    """One detector window ``i`` (10 minutes from ``t0``) with a PSI per feature."""
    start = t0 + i * WINDOW
    rows = [[model, version, "psi", f, segment, start, start + WINDOW, "psi", v, None, 0.2,
             v > 0.2, 5000, size, "{}"] for f, v in psi.items()]
    client.insert("driftline.drift_metrics", rows, column_names=DRIFT_COLUMNS)


def insert_impacts(client: Any, model: str, i: int, impacts: dict[str, float], *,
                   detector: str = "psi", version: str = "v1", segment: str = "", size: int = 1000,
                   t0: dt.datetime = T0) -> None:
    """The ``impact`` rows of window ``i``: one per drifted feature, as data drift writes them."""
    from driftline.detectors.base import STAT_IMPACT

    start = t0 + i * WINDOW
    ranked = sorted(impacts, key=lambda f: -impacts[f])
    rows = [[model, version, detector, f, segment, start, start + WINDOW, STAT_IMPACT, v, None, None,
             True, 5000, size, json.dumps({"importance": v / 0.5, "magnitude": 0.5, "rank": ranked.index(f) + 1})]
            for f, v in impacts.items()]
    client.insert("driftline.drift_metrics", rows, column_names=DRIFT_COLUMNS)


def window_end(i: int, t0: dt.datetime = T0) -> float:
    return (t0 + (i + 1) * WINDOW).timestamp()


def rules_yaml(tmp: Path, model: str, slack_url: str, pd_url: str, hook_url: str, *,
               interval_s: float = 60, extra_rule: str = "") -> tuple[Path, dict[str, str]]:
    """A rules file using env secrets; returns (path, env)."""
    env = {"T_SLACK_URL": slack_url, "T_PD_KEY": "R0UT1NGKEY0123456789abcdef012345",
           "T_HOOK_SECRET": "whsec-test"}
    text = f"""
version: 1
dashboard_url: http://dash.example:8501
interval_s: {interval_s}
allow_local_development: true
channels:
  oncall-slack: {{type: slack, url_env: T_SLACK_URL}}
  oncall-pd: {{type: pagerduty, url: "{pd_url}", routing_key_env: T_PD_KEY}}
  retrain-ci: {{type: webhook, url: "{hook_url}", secret_env: T_HOOK_SECRET, cooldown_s: 86400}}
rules:
  - name: feature-drift
    kind: drift
    model: {model}
    statistic: psi
    op: ">"
    threshold: 0.2
    fire_after: 3
    resolve_after: 2
    min_samples: 500
    severity: critical
    channels: [oncall-slack, oncall-pd]
    retrain: retrain-ci
    description: Input distribution moved away from the training data.
{extra_rule}
"""
    path = tmp / "rules.yaml"
    path.write_text(text)
    return path, env
