"""Variant roles and shadow pairing, written once for producers, rollups and detectors.

An event's ``variant`` names the arm that produced it; its *role* is read from that name, so the
schema stays v1 and every event written before roles existed keeps its meaning:

* ``primary`` (or no variant) -- the served model;
* ``shadow`` or ``shadow:NAME`` -- a shadow: mirrored traffic, never served, compared with the
  served event of the same request and row. Older names such as ``shadow2`` are shadows too: any
  variant that starts with ``shadow`` is one (the rollups' ``variant LIKE 'shadow%'``);
* ``canary:NAME`` -- the canary arm of a split;
* any other name -- an A/B arm (``challenger``).

The name after the role is free; the model version is a field of its own (``model_version``).

A request of several rows gives one event per row, all with the request's ``request_id``; the
row's index travels in the tag :data:`ROW_TAG` (absent for a one-row request), and a served
event and its shadow are paired by :func:`pair_key` -- request id and row -- not by request alone.

>>> variant_for(SHADOW, "candidate"), role_of("shadow:candidate"), role_of("shadow2"), role_of("challenger")
('shadow:candidate', 'shadow', 'shadow', 'arm')
>>> pair_key("req-1", {"row": "2"}), pair_key("req-1", None)
('req-1|2', 'req-1|')
"""

from __future__ import annotations

from typing import Mapping

PRIMARY = "primary"
SHADOW = "shadow"
ARM = "arm"
CANARY = "canary"
ROLES = (PRIMARY, SHADOW, ARM, CANARY)
SEPARATOR = ":"
#: tag holding a row's index within a request of several rows
ROW_TAG = "row"


def variant_for(role: str, name: str) -> str:
    """The ``variant`` an event of ``role`` named ``name`` carries (``shadow`` alone for the unnamed shadow)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
    if role == SHADOW and name.startswith(SHADOW):  # "shadow", "shadow2": already shadows by name
        return name
    if role in (SHADOW, CANARY) and name != role:
        return f"{role}{SEPARATOR}{name}"
    return name


def role_of(variant: str | None) -> str:
    """The role of an event's ``variant`` (see the module doc); never raises."""
    if not variant or variant == PRIMARY:
        return PRIMARY
    if variant.startswith(SHADOW):
        return SHADOW
    if variant.startswith(CANARY + SEPARATOR):
        return CANARY
    return ARM


def is_shadow(variant: str | None) -> bool:
    return bool(variant) and variant.startswith(SHADOW)  # type: ignore[union-attr]


def pair_key(request_id: str, tags: Mapping[str, str] | None) -> str:
    """What pairs a served event with its shadows: the request id and the row within the request."""
    row = tags.get(ROW_TAG, "") if tags else ""
    return f"{request_id}|{row}"
