"""Server-side request forgery checks for outgoing webhook URLs.

A URL is accepted only if it is ``https`` (``http`` too when local development is allowed
explicitly), carries no user-info, and every address its host resolves to is a public unicast
address. Refused always: link-local (169.254/16, fe80::/10, where cloud metadata services
live), well-known metadata host names, multicast, reserved and unspecified addresses. Refused
unless local development is allowed: loopback and private ranges (10/8, 172.16/12, 192.168/16,
100.64/10, fc00::/7). IPv4-mapped/compatible and NAT64 IPv6 forms are judged by the IPv4 address
they embed, and host names written as decimal, octal or hex numbers (``http://2130706433/``,
``0x7f.1``) are decoded the way ``inet_aton`` would before they are judged.

The check returns the address to connect to, so the sender pins the connection to an address
that passed (no second DNS lookup an attacker could answer differently). Redirects are never
followed by the sender.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from driftline.sdk.errors import UnsafeURLError

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata",
                            "instance-data", "instance-data.ec2.internal",
                            "metadata.azure.com", "169.254.169.254"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address``) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses of ``host`` from the system resolver."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse ``host`` as an IP address in any notation ``inet_aton`` accepts, else None."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    parts = h.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    nums = []
    for p in parts:
        try:
            if p.lower().startswith("0x"):
                nums.append(int(p[2:] or "0", 16))
            elif len(p) > 1 and p.startswith("0"):
                nums.append(int(p, 8))
            else:
                nums.append(int(p, 10))
        except ValueError:
            return None
    # inet_aton: the last part fills all remaining bytes (a.b.c.d, a.b.c16, a.b24, a32).
    value = 0
    for n in nums[:-1]:
        if n > 255:
            return None
        value = value << 8 | n
    rest_bits = 8 * (5 - len(nums))
    if nums[-1] >= 1 << rest_bits:
        return None
    return ipaddress.IPv4Address(value << rest_bits | nums[-1])


def _embedded_v4(ip: Any) -> Any:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(int(ip))
    return ip


def address_problem(ip: Any, allow_local: bool) -> str | None:
    """Why ``ip`` may not be contacted, or None when it may."""
    ip = _embedded_v4(ip)
    if ip.is_link_local:
        return "link-local address (cloud metadata lives here)"
    if ip.is_loopback:
        return None if allow_local else "loopback address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "multicast, unspecified or reserved address"
    if ip.is_private or not ip.is_global:
        return None if allow_local else "private or non-public address"
    return None


def check_url(url: str, *, allow_local: bool = False,
              resolver: Resolver = system_resolver) -> Target:
    """Check ``url``; return the :class:`Target` to connect to or raise :class:`UnsafeURLError`.

    >>> check_url("http://2130706433/", allow_local=False)
    Traceback (most recent call last):
    ...
    driftline.sdk.errors.UnsafeURLError: refused http://2130706433/: only https URLs are allowed
    """
    shown = _redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"refused {shown}: malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_local and scheme == "http"):
        raise UnsafeURLError(f"refused {shown}: only https URLs are allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError(f"refused {shown}: credentials in the URL are not allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURLError(f"refused {shown}: no host")
    if host in METADATA_HOSTS:
        raise UnsafeURLError(f"refused {shown}: cloud metadata host")
    port = port or (443 if scheme == "https" else 80)
    literal = parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except OSError as exc:
            raise UnsafeURLError(f"refused {shown}: cannot resolve host ({exc})") from None
        if not addresses:
            raise UnsafeURLError(f"refused {shown}: host has no address")
    # Every address must pass: a name that also resolves to an internal one is refused.
    for a in addresses:
        ip = parse_ip(a)
        problem = "unparseable address" if ip is None else address_problem(ip, allow_local)
        if problem:
            raise UnsafeURLError(f"refused {shown}: {host} -> {a}: {problem}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, path, str(parse_ip(addresses[0])))


def _redact(url: str) -> str:
    """The URL without path or query: webhook URLs often carry their secret in the path."""
    try:
        p = urlsplit(url)
        return f"{p.scheme}://{p.netloc.rsplit('@', 1)[-1]}/…" if p.netloc else "<url>"
    except ValueError:
        return "<url>"


__all__ = ["Target", "UnsafeURLError", "address_problem", "check_url", "parse_ip",
           "system_resolver"]
