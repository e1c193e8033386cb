"""Patches of JSON-like state: what changed in a model's bounded core since its last save.

A model's core (histograms of every segment and feature, detector windows, counters) is bounded
but not small: 50 segments of 1,000 features are megabytes. A chunk that brings a model a few
events changes a few bins of the segments those events fall in, so a save writes a *patch*
against the core as last saved (:func:`diff`), and loading folds the patches back
(:func:`apply`). Parts the caller knows are unchanged are passed as :data:`SAME` and not even
compared, so the work of a save follows the events, not the size of the state.

A patch is a JSON object: ``{"d": {key: patch}, "r": [removed keys]}`` for a dict,
``{"i": [[index, value], ...]}`` for a list of numbers of unchanged length (only the entries
that changed), ``{"l": [[index, patch], ...]}`` for any other list of unchanged length, ``{"a": [values]}``
for a list that only grew at its end,
``{"v": value}`` for anything replaced whole.

>>> old = {"a": [0, 0, 0, 0], "b": {"x": 1}, "c": "k"}
>>> new = {"a": [0, 2, 0, 0], "b": {"x": 1, "y": 2}, "c": SAME}
>>> p = diff(old, new); p
{'d': {'a': {'i': [[1, 2]]}, 'b': {'d': {'y': {'v': 2}}}}}
>>> apply(old, p)["a"], old["b"]
([0, 2, 0, 0], {'x': 1, 'y': 2})
"""

from __future__ import annotations

from operator import ne
from typing import Any

from driftline.sdk.contract.schema import NUMBER_TYPES, SCALAR_TYPES

__all__ = ["SAME", "diff", "apply", "copy_json"]


class _Same:
    """Marks a part of a new document as unchanged since the old one (not compared)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SAME"


#: the placeholder for a part known to be unchanged
SAME: Any = _Same()


def _eq(a: Any, b: Any) -> bool:
    if type(a) is not type(b):  # True == 1 in Python, not in JSON
        return False
    return a == b or (a != a and b != b)  # NaN is NaN


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples as lists, scalars); far cheaper than
    ``copy.deepcopy``. :data:`SAME` parts must have been resolved before."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if SCALAR_TYPES.issuperset(map(type, value)):  # C-speed check: most lists are bins
            return list(value)
        return [copy_json(v) for v in value]
    return value


def diff(old: Any, new: Any) -> dict[str, Any] | None:
    """The patch that turns ``old`` into ``new`` (None when equal). ``new`` may hold
    :data:`SAME` where it is known to equal ``old``; ``old`` is not modified."""
    if new is SAME:
        return None
    if isinstance(new, dict) and isinstance(old, dict):
        changed: dict[str, Any] = {}
        for k, v in new.items():
            if v is SAME:
                continue
            if k not in old:
                changed[k] = {"v": copy_json(v)}
                continue
            p = diff(old[k], v)
            if p is not None:
                changed[k] = p
        removed = [k for k in old if k not in new]
        if not changed and not removed:
            return None
        out: dict[str, Any] = {"d": changed}
        if removed:
            out["r"] = removed
        return out
    if isinstance(new, (list, tuple)) and isinstance(old, list):
        if len(new) == len(old) and NUMBER_TYPES.issuperset(map(type, new)) and NUMBER_TYPES.issuperset(map(type, old)):
            if old == new if isinstance(new, list) else old == list(new):
                return None
            # a NaN bin (none in histograms) would only be written again
            changed = sum(map(ne, old, new))  # at C speed: after a window closed, most bins changed
            if not changed:
                return None
            if 2 * changed < len(new):
                return {"i": [[i, b] for i, (a, b) in enumerate(zip(old, new)) if a != b]}
            return {"v": list(new)}
        if len(new) == len(old):
            if new and type(new[0]) is list and old == new:  # C-speed deep compare (a sample's rows)
                return None
            items = [[i, p] for i, p in enumerate(map(diff, old, new)) if p is not None]
            return {"l": items} if items else None
        n = len(old)
        if len(new) > n and list(new[:n]) == old:  # a buffer that grew (a window's sample)
            return {"a": copy_json(new[n:])}
        return {"v": copy_json(new)}
    if _eq(old, new):
        return None
    return {"v": copy_json(new)}


def apply(doc: Any, patch: dict[str, Any] | None) -> Any:
    """Apply ``patch`` to ``doc`` in place where it can (dicts, lists); return the result.

    The patch's values become part of ``doc`` (not copied): apply a patch once (:func:`diff`
    copies what it takes from the new document, JSON loading makes fresh objects)."""
    if patch is None:
        return doc
    if doc is None and "d" in patch:  # a part the saved document predates (an older build): empty then
        doc = {}
    if "v" in patch:
        return patch["v"]
    if "i" in patch:
        for i, v in patch["i"]:
            doc[i] = v
        return doc
    if "a" in patch:
        doc.extend(patch["a"])
        return doc
    if "l" in patch:
        for i, p in patch["l"]:
            doc[i] = apply(doc[i], p)
        return doc
    for k in patch.get("r", ()):
        doc.pop(k, None)
    for k, p in patch["d"].items():
        doc[k] = apply(doc.get(k), p)
    return doc
