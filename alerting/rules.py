"""Alert rules and notification channels, read from YAML and validated once at start.

A rules file looks like this (every key is checked; a misspelled key is a :class:`ConfigError`)::

    version: 1
    dashboard_url: https://driftline.example.com
    interval_s: 60                  # how often rules are evaluated
    allow_local_development: false  # true lets channel URLs be http:// and loopback (tests, laptops)
    channels:
      oncall-slack: {type: slack, url_env: SLACK_WEBHOOK_URL}
      oncall-pd:    {type: pagerduty, routing_key_file: /run/secrets/pd_key}
      retrain-ci:   {type: webhook, url: https://ci.example.com/hooks/retrain,
                     secret_env: RETRAIN_HMAC_SECRET, cooldown_s: 86400}
      team-mail:    {type: email, smtp_host: smtp.example.com, sender: a@x.io, to: [b@x.io]}
    rules:
      - name: feature-drift
        kind: drift                 # drift | performance | latency | error_rate | volume | shadow_agreement
                                    # | estimated_performance | realised_performance
        model: fraud                # or "*" for every model, each separately
        segment: ""                 # "" all traffic, "country=FR", "country=*" (each value), "*"
        statistic: psi
        op: ">"
        threshold: 0.2              # the statistic's value against it; omit for drift rules to
                                    # read the detector's verdict on each feature instead
        flag: verdict               # drift rules without threshold: verdict (default) or exceeded
                                    # (the named statistic crossed its own threshold)
        fire_after: 3               # consecutive breaching windows before the incident opens
        resolve_after: 2            # consecutive healthy windows before it resolves
        min_samples: 500            # windows with fewer samples are ignored (neither breach nor ok)
        severity: critical
        channels: [oncall-slack, oncall-pd]
        retrain: retrain-ci         # optional: POST an evidence bundle to this webhook channel

``estimated_performance`` and ``realised_performance`` rules read the detectors' windows of
``driftline.performance_estimates`` (no ``window_s``): the first breaches when the estimate's
whole band is past ``threshold`` (``op`` ``<``: its upper bound below it; ``>``, the default for
mae and rmse: its lower bound above it), or without ``threshold`` on the detector's own verdict
(the band at the false-alarm budget's level past ``performance_estimation``'s floor); the second
when the realised value over the window's labelled rows is, with ``min_samples`` counting
labelled rows. Their messages carry the band and the label coverage.

Secrets (Slack URLs, routing keys, HMAC secrets, SMTP passwords) come from ``*_env`` (an
environment variable) or ``*_file`` (a file, e.g. a mounted secret); they are held in
:class:`Secret`, whose ``repr`` never shows the value so that it cannot end up in a log line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftline.sdk.errors import ConfigError

# What a drift rule without a threshold reads: the detector's verdict on the feature (``drift``),
# or whether the named statistic crossed its own threshold (``exceeded``).
FLAGS = ("verdict", "exceeded")
#: rule kinds over ``performance_estimates`` (the detectors' windows, like drift)
ESTIMATION_KINDS = ("estimated_performance", "realised_performance")
KINDS = ("drift", "performance", "latency", "error_rate", "volume", "shadow_agreement", *ESTIMATION_KINDS)
_ESTIMATED = ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
STATISTICS: dict[str, tuple[str, ...]] = {
    "performance": ("accuracy", "error_rate", "mae", "rmse"),
    "latency": ("p50", "p90", "p95", "p99", "mean", "max"),
    "error_rate": ("error_rate",),
    "volume": ("count",),
    "shadow_agreement": ("agreement",),
    "estimated_performance": _ESTIMATED,
    "realised_performance": _ESTIMATED,
}
DEFAULT_OPS = {"drift": ">", "performance": "<", "latency": ">", "error_rate": ">",
               "volume": "<", "shadow_agreement": "<", "estimated_performance": "<",
               "realised_performance": "<"}
OPS = (">", ">=", "<", "<=")
SEVERITIES = ("critical", "error", "warning", "info")
CHANNEL_TYPES = ("slack", "pagerduty", "webhook", "email")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Secret:
    """A secret string. ``str()``/``repr()`` print ``'***'``; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ChannelConfig:
    """One notification destination. ``url`` is a :class:`Secret` for Slack (the URL is the key)."""

    name: str
    type: str
    url: Secret | None = None
    routing_key: Secret | None = None
    secret: Secret | None = None
    cooldown_s: float = 86400.0
    timeout_s: float = 10.0
    rate_per_s: float = 0.0
    smtp_host: str = ""
    smtp_port: int = 587
    starttls: bool = True
    sender: str = ""
    to: tuple[str, ...] = ()
    username: str = ""
    password: Secret | None = None


@dataclass(frozen=True)
class Rule:
    """One alert rule; see the module docstring for the meaning of each field."""

    name: str
    kind: str
    statistic: str
    op: str
    threshold: float | None
    model: str = "*"
    model_version: str = "*"
    segment: str = ""
    detector: str = ""
    features: tuple[str, ...] = ()
    window_s: int = 0
    fire_after: int = 1
    resolve_after: int = 1
    min_samples: int = 0
    severity: str = "warning"
    channels: tuple[str, ...] = ()
    retrain: str = ""
    repeat_interval_s: float = 4 * 3600.0
    per_version: bool = True
    tolerance: float = 0.0
    description: str = ""
    flag: str = "verdict"

    def breaches(self, value: float) -> bool:
        """True when ``value`` violates this rule's condition."""
        assert self.threshold is not None
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t}[self.op]


@dataclass(frozen=True)
class RuleSet:
    """Everything a rules file configures."""

    rules: tuple[Rule, ...]
    channels: Mapping[str, ChannelConfig]
    dashboard_url: str = ""
    interval_s: float = 60.0
    allow_local_development: bool = False
    history_windows: int = 48
    lookback_s: int = 7 * 86400


def load_rules(path: str | Path, env: Mapping[str, str] | None = None) -> RuleSet:
    """Read and validate a rules file. ``env`` defaults to ``os.environ`` (read now, not at import)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"rules file {path}: cannot read ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"rules file {path}: invalid YAML: {exc}") from None
    return parse_rules(doc, env=os.environ if env is None else env, base_dir=Path(path).parent)


def parse_rules(doc: Any, env: Mapping[str, str], base_dir: Path = Path(".")) -> RuleSet:
    """Validate a parsed rules document (see :func:`load_rules`)."""
    top = _mapping(doc, "rules file")
    _only(top, "rules file", {"version", "dashboard_url", "interval_s", "allow_local_development",
                              "channels", "rules", "history_windows", "lookback_s",
                              "repeat_interval_s"})
    if top.get("version", 1) != 1:
        raise ConfigError("version: only version 1 is supported")
    channels: dict[str, ChannelConfig] = {}
    for name, spec in _mapping(top.get("channels") or {}, "channels").items():
        channels[str(name)] = _channel(str(name), spec, env, base_dir)
    repeat = _num(top.get("repeat_interval_s", 4 * 3600), "repeat_interval_s", minimum=0)
    rules: list[Rule] = []
    seen: set[str] = set()
    raw_rules = top.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError("rules: give a non-empty list of rules")
    for i, spec in enumerate(raw_rules):
        rule = _rule(i, spec, channels, repeat)
        if rule.name in seen:
            raise ConfigError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(
        rules=tuple(rules), channels=channels,
        dashboard_url=str(top.get("dashboard_url", "")).rstrip("/"),
        interval_s=_num(top.get("interval_s", 60), "interval_s", minimum=0.01),
        allow_local_development=_bool(top.get("allow_local_development", False),
                                      "allow_local_development"),
        history_windows=int(_num(top.get("history_windows", 48), "history_windows", minimum=1)),
        lookback_s=int(_num(top.get("lookback_s", 7 * 86400), "lookback_s", minimum=60)),
    )


def _rule(i: int, spec: Any, channels: Mapping[str, ChannelConfig], repeat: float) -> Rule:
    where = f"rules[{i}]"
    d = _mapping(spec, where)
    _only(d, where, {"name", "kind", "statistic", "op", "threshold", "model", "model_version",
                     "segment", "detector", "features", "window_s", "fire_after", "resolve_after",
                     "min_samples", "severity", "channels", "retrain", "repeat_interval_s",
                     "per_version", "tolerance", "description", "flag"})
    name = str(d.get("name", ""))
    if not _NAME_RE.match(name):
        raise ConfigError(f"{where}.name: use 1-100 letters, digits, '.', '_' or '-' (got {name!r})")
    where = f"rules[{i}] ({name})"
    kind = d.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: one of {', '.join(KINDS)} (got {kind!r})")
    statistic = str(d.get("statistic", "" if kind == "drift" else STATISTICS[kind][0]))
    if kind == "drift" and not statistic:
        raise ConfigError(f"{where}.statistic: name the drift statistic, e.g. psi")
    if kind != "drift" and statistic not in STATISTICS[kind]:
        raise ConfigError(f"{where}.statistic: for {kind} one of {', '.join(STATISTICS[kind])}")
    lower_is_better = kind in ESTIMATION_KINDS and statistic in ("mae", "rmse")
    op = str(d.get("op", ">" if lower_is_better else DEFAULT_OPS[kind]))
    if op not in OPS:
        raise ConfigError(f"{where}.op: one of {' '.join(OPS)} (got {op!r})")
    threshold = d.get("threshold")
    if threshold is None and kind not in ("drift", "estimated_performance"):
        raise ConfigError(f"{where}.threshold: required for {kind} rules")
    if threshold is not None:
        threshold = _num(threshold, f"{where}.threshold")
    flag = str(d.get("flag", "verdict"))
    if flag not in FLAGS:
        raise ConfigError(f"{where}.flag: one of {', '.join(FLAGS)} (got {flag!r})")
    if "flag" in d and (kind != "drift" or threshold is not None):
        raise ConfigError(f"{where}.flag: only for drift rules without a threshold (a threshold "
                          "compares the statistic's value)")
    window_s = int(_num(d.get("window_s", 0), f"{where}.window_s", minimum=0))
    if kind not in ("drift", *ESTIMATION_KINDS) and window_s < 1:
        raise ConfigError(f"{where}.window_s: required for {kind} rules (seconds per window)")
    severity = d.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}.severity: one of {', '.join(SEVERITIES)}")
    rule_channels = tuple(str(c) for c in (d.get("channels") or []))
    for c in rule_channels:
        if c not in channels:
            raise ConfigError(f"{where}.channels: unknown channel {c!r}; define it under channels:")
    retrain = str(d.get("retrain") or "")
    if retrain and (retrain not in channels or channels[retrain].type != "webhook"):
        raise ConfigError(f"{where}.retrain: must name a channel of type webhook (got {retrain!r})")
    feats = d.get("features", "*")
    features = () if feats in ("*", None) else tuple(str(f) for f in _list(feats, f"{where}.features"))
    segment = str(d.get("segment", ""))
    if segment == "*" and kind != "drift":
        raise ConfigError(f"{where}.segment: '*' is for drift rules; use 'tag=*' for {kind}")
    if segment not in ("", "*") and "=" not in segment:
        raise ConfigError(f"{where}.segment: '', '*', 'tag=value' or 'tag=*' (got {segment!r})")
    return Rule(
        name=name, kind=kind, statistic=statistic, op=op, threshold=threshold,
        model=str(d.get("model", "*")), model_version=str(d.get("model_version", "*")),
        segment=segment, detector=str(d.get("detector", "")), features=features,
        window_s=window_s,
        fire_after=int(_num(d.get("fire_after", 1), f"{where}.fire_after", minimum=1)),
        resolve_after=int(_num(d.get("resolve_after", 1), f"{where}.resolve_after", minimum=1)),
        min_samples=int(_num(d.get("min_samples", 0), f"{where}.min_samples", minimum=0)),
        severity=severity, channels=rule_channels, retrain=retrain,
        repeat_interval_s=_num(d.get("repeat_interval_s", repeat), f"{where}.repeat_interval_s",
                               minimum=0),
        per_version=_bool(d.get("per_version", kind != "volume"), f"{where}.per_version"),
        tolerance=_num(d.get("tolerance", 0.0), f"{where}.tolerance", minimum=0),
        description=str(d.get("description", "")), flag=flag,
    )


_CHANNEL_KEYS = {
    "slack": {"url", "timeout_s", "rate_per_s"},
    "pagerduty": {"url", "routing_key", "timeout_s", "rate_per_s"},
    "webhook": {"url", "secret", "cooldown_s", "timeout_s", "rate_per_s"},
    "email": {"smtp_host", "smtp_port", "starttls", "sender", "to", "username", "password",
              "timeout_s", "rate_per_s"},
}
_SECRET_KEYS = {"url", "routing_key", "secret", "password"}
# Default pacing below each service's documented limit: Slack ~1 message/s per webhook,
# PagerDuty ~120 events/min per routing key.
_DEFAULT_RATE = {"slack": 1.0, "pagerduty": 2.0, "webhook": 5.0, "email": 1.0}


def _channel(name: str, spec: Any, env: Mapping[str, str], base_dir: Path) -> ChannelConfig:
    where = f"channels.{name}"
    if not _NAME_RE.match(name):
        raise ConfigError(f"{where}: use letters, digits, '.', '_' or '-' in channel names")
    d = _mapping(spec, where)
    ctype = d.get("type")
    if ctype not in CHANNEL_TYPES:
        raise ConfigError(f"{where}.type: one of {', '.join(CHANNEL_TYPES)} (got {ctype!r})")
    allowed = {"type"} | _CHANNEL_KEYS[ctype]
    allowed |= {f"{k}_env" for k in _SECRET_KEYS & allowed} | {f"{k}_file" for k in _SECRET_KEYS & allowed}
    _only(d, where, allowed)
    secrets = {k: _secret(d, k, where, env, base_dir) for k in _SECRET_KEYS & allowed}
    kw: dict[str, Any] = {}
    if ctype == "pagerduty" and secrets["url"] is None:
        secrets["url"] = Secret("https://events.pagerduty.com/v2/enqueue")
    if ctype in ("slack", "pagerduty", "webhook") and secrets["url"] is None:
        raise ConfigError(f"{where}: set url, url_env or url_file")
    if ctype == "pagerduty" and secrets["routing_key"] is None:
        raise ConfigError(f"{where}: set routing_key_env or routing_key_file")
    if ctype == "email":
        for k in ("smtp_host", "sender", "to"):
            if not d.get(k):
                raise ConfigError(f"{where}.{k}: required for email channels")
        kw = dict(smtp_host=str(d["smtp_host"]), sender=str(d["sender"]),
                  to=tuple(str(t) for t in _list(d["to"], f"{where}.to")),
                  smtp_port=int(_num(d.get("smtp_port", 587), f"{where}.smtp_port", minimum=1)),
                  starttls=_bool(d.get("starttls", True), f"{where}.starttls"),
                  username=str(d.get("username", "")))
    if ctype == "webhook":
        kw["cooldown_s"] = _num(d.get("cooldown_s", 86400), f"{where}.cooldown_s", minimum=0)
    return ChannelConfig(
        name=name, type=ctype, url=secrets.get("url"), routing_key=secrets.get("routing_key"),
        secret=secrets.get("secret"), password=secrets.get("password"),
        timeout_s=_num(d.get("timeout_s", 10), f"{where}.timeout_s", minimum=0.001),
        rate_per_s=_num(d.get("rate_per_s", _DEFAULT_RATE[ctype]), f"{where}.rate_per_s", minimum=0),
        **kw,
    )


def _secret(d: Mapping[str, Any], key: str, where: str, env: Mapping[str, str],
            base_dir: Path) -> Secret | None:
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in d]
    if len(given) > 1:
        raise ConfigError(f"{where}: set only one of {', '.join(given)}")
    if not given:
        return None
    k = given[0]
    if k.endswith("_env"):
        var = str(d[k])
        if not env.get(var):
            raise ConfigError(f"{where}.{k}: environment variable {var} is not set")
        return Secret(env[var])
    if k.endswith("_file"):
        p = Path(str(d[k]))
        p = p if p.is_absolute() else base_dir / p
        try:
            value = p.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.{k}: cannot read {p} ({exc.strerror})") from None
        if not value:
            raise ConfigError(f"{where}.{k}: {p} is empty")
        return Secret(value)
    return Secret(str(d[k]))


def _mapping(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list")
    return v


def _only(d: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    extra = sorted(set(map(str, d)) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def _num(v: Any, where: str, minimum: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}: expected a number (got {v!r})")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}: must be >= {minimum} (got {v})")
    return float(v)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: expected true or false (got {v!r})")
    return v


__all__ = ["ESTIMATION_KINDS", "ChannelConfig", "Rule", "RuleSet", "Secret", "load_rules", "parse_rules"]
