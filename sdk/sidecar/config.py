"""Typed, frozen settings of the sidecar (and of ``driftline serve``), built once at start-up.

Built from command-line flags plus the environment for secrets (bearer tokens come from an env
variable or a file, never from a flag: flags show up in ``ps`` and shell history).
Every check runs here, so a bad configuration fails at start-up with a message that says what
to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from driftline.sdk.contract.variants import SEPARATOR, SHADOW, variant_for
from driftline.sdk.errors import ConfigError
from driftline.sdk.sidecar.extraction import ExtractSpec

DEFAULT_TOKENS_ENV = "DRIFTLINE_SIDECAR_TOKENS"
#: where the sidecar serves its own Prometheus metrics: not ``/metrics``, which belongs to the
#: upstream (KServe, MLServer and Triton serve theirs there) and is proxied like any other path
DEFAULT_METRICS_PATH = "/driftline/metrics"
DEFAULT_ADMIN_TOKENS_ENV = "DRIFTLINE_SIDECAR_ADMIN_TOKENS"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"10MB"``, ``"512k"``, ``"1GiB"`` or a plain byte count -> bytes (powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"size {text!r} is not a byte count such as 1048576, 512k or 10MB")
    unit = (m.group(2) or "b").lower()[0]
    factor = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    return int(float(m.group(1)) * factor)


@dataclass(frozen=True)
class ShadowTarget:
    """A shadow upstream. Its events carry ``variant`` ``shadow`` or ``shadow:NAME``
    (:func:`driftline.sdk.contract.variants.variant_for`) and ``model_version=version``, or the
    primary's version when ``version`` is None."""

    name: str
    url: str
    version: str | None = None

    @property
    def variant(self) -> str:
        return variant_for(SHADOW, self.name)


def parse_shadow(spec: str, index: int) -> ShadowTarget:
    """``URL``, ``NAME=URL``, ``URL@VERSION`` or ``NAME=URL@VERSION``; unnamed shadows are
    ``shadow``, ``shadow2``, ...

    >>> parse_shadow("candidate=http://127.0.0.1:9001@v2", 0)
    ShadowTarget(name='candidate', url='http://127.0.0.1:9001', version='v2')
    """
    name, sep, url = spec.partition("=")
    if not sep or name.startswith("http"):
        name, url = ("shadow" if index == 0 else f"shadow{index + 1}"), spec
    version = None
    head, at, tail = url.rpartition("@")
    # user:password@host has a ':' or '/' after its '@'; a version has neither
    if at and "://" in head and tail and not any(c in tail for c in ":/"):
        url, version = head, tail
    if not (url.startswith("http://") or url.startswith("https://")):
        raise ConfigError(f"--shadow {spec!r}: expected [NAME=]URL[@VERSION] with an http(s):// URL")
    name = name.strip()
    if not name or SEPARATOR in name or len(name) > 64:
        raise ConfigError(f"--shadow {spec!r}: the name must be 1-64 characters without {SEPARATOR!r}")
    return ShadowTarget(name, url.rstrip("/"), version)


@dataclass(frozen=True)
class SidecarSettings:
    """Everything the proxy needs besides the SDK's own :class:`SdkSettings`.

    Times are seconds, sizes bytes. ``tokens`` / ``admin_tokens`` map a token's name (logged) to
    its secret (never logged); empty means auth is off. ``admin_tokens`` defaults to ``tokens``.
    ``log_paths`` are glob patterns of request paths whose requests become prediction events
    (default: every POST). The sidecar's own metrics are at ``metrics_path`` (default
    :data:`DEFAULT_METRICS_PATH`) on ``port``, or on a port of their own with ``metrics_port``;
    every other path, ``/metrics`` included, reaches the upstream.
    """

    upstream: str
    model: str
    version: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    shadows: tuple[ShadowTarget, ...] = ()
    shadow_sample: float = 1.0
    shadow_concurrency: int = 64
    shadow_timeout_s: float = 10.0
    split_file: str | None = None
    split_poll_s: float = 1.0
    sticky_header: str | None = None
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    capture_bytes: int = 1024 * 1024
    tokens: Mapping[str, str] = field(default_factory=dict)
    admin_tokens: Mapping[str, str] | None = None
    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None
    extract: ExtractSpec = field(default_factory=ExtractSpec)
    log_paths: tuple[str, ...] = ()
    log_methods: tuple[str, ...] = ("POST",)
    access_log: bool = True
    upstream_connections: int = 256
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = DEFAULT_METRICS_PATH
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if not (self.upstream.startswith("http://") or self.upstream.startswith("https://")
                or self.upstream == "local:"):
            raise ConfigError(f"--upstream {self.upstream!r} must be an http(s):// URL")
        if not self.model:
            raise ConfigError("--model is required: the model name every event carries")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port")
        if not 0.0 <= self.shadow_sample <= 1.0:
            raise ConfigError("--shadow-sample must be between 0 and 1")
        if self.shadow_concurrency < 1:
            raise ConfigError("--shadow-concurrency must be >= 1")
        names = [s.name for s in self.shadows]
        if len(set(names)) != len(names):
            raise ConfigError(f"shadow names must be unique, got {names}")
        for name, value in (("--timeout", self.timeout_s), ("--connect-timeout", self.connect_timeout_s),
                            ("--shadow-timeout", self.shadow_timeout_s), ("split poll", self.split_poll_s)):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds")
        if not self.metrics_path.startswith("/") or len(self.metrics_path) < 2:
            raise ConfigError(f"--metrics-path {self.metrics_path!r} must be a path such as {DEFAULT_METRICS_PATH}")
        if self.metrics_port is not None and not (0 <= self.metrics_port <= 65535 and self.metrics_port != self.port):
            raise ConfigError(f"--metrics-port {self.metrics_port} must be a TCP port other than --port")
        if self.max_body_bytes < 1:
            raise ConfigError("--max-body must be at least 1 byte")
        if self.rate_limit_rps is not None and not self.rate_limit_rps > 0:
            raise ConfigError("--rate-limit must be > 0 requests per second")
        if self.rate_limit_burst is not None and self.rate_limit_burst < 1:
            raise ConfigError("--rate-burst must be >= 1")

    @property
    def admin(self) -> Mapping[str, str]:
        return self.tokens if self.admin_tokens is None else self.admin_tokens

    @property
    def burst(self) -> int:
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1, int(self.rate_limit_rps or 1))

    def public_dict(self) -> dict[str, Any]:
        """Settings without secrets, for the start-up log line."""
        return {"upstream": self.upstream, "model": self.model, "version": self.version,
                "listen": f"{self.host}:{self.port}", "shadows": [s.name for s in self.shadows],
                "split_file": self.split_file, "timeout_s": self.timeout_s,
                "max_body_bytes": self.max_body_bytes, "auth_tokens": sorted(self.tokens),
                "rate_limit_rps": self.rate_limit_rps,
                "metrics": f"{self.metrics_port or self.port}{self.metrics_path}"}


def parse_tags(items: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ConfigError(f"--tag {item!r}: expected KEY=VALUE")
        tags[k] = v
    return tags
