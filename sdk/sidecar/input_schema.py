"""The input schema of a served model: inferred from a sample or the model, or given as JSON Schema.

Validation names the field that is wrong (``instances[1].age: expected number, got string``) so a
422 tells the caller exactly what to fix. The JSON Schema support is a deliberate subset, enough
for a flat row of features: ``type`` (object at the top), ``properties``, ``required``,
``additionalProperties`` (boolean) and per property ``type`` (string or list of
number/integer/string/boolean/null), ``enum``, ``const``, ``minimum``, ``maximum``,
``exclusiveMinimum``, ``exclusiveMaximum``, ``minLength``, ``maxLength``; annotations (title,
description, default, examples, format, $schema, $id, $comment) are ignored. Any other keyword is a
start-up error rather than a rule silently not enforced.

>>> s = InputSchema.from_sample({"age": 41, "plan": "pro"})
>>> s.rows_from_predict({"age": "x", "plan": "pro"})[2]
[('age', 'expected number, got string')]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftline.sdk.contract.schema import positional_feature
from driftline.sdk.errors import ConfigError

TYPES = ("number", "integer", "string", "boolean", "null")
_ANNOTATIONS = {"title", "description", "default", "examples", "format", "$schema", "$id", "$comment",
                "readOnly", "writeOnly", "deprecated"}
_FIELD_KEYS = {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
               "minLength", "maxLength"} | _ANNOTATIONS
_TOP_KEYS = {"type", "properties", "required", "additionalProperties"} | _ANNOTATIONS
MAX_ERRORS = 50

Issue = tuple[str, str]


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return {list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _type_ok(v: Any, t: str) -> bool:
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if t == "string":
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if t == "integer":
        return isinstance(v, int) or (math.isfinite(v) and float(v).is_integer())
    return True


@dataclass(frozen=True)
class InputField:
    """One input feature and its constraints."""

    name: str
    types: tuple[str, ...] = ("number",)
    required: bool = True
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def check(self, v: Any) -> str | None:
        """None when ``v`` is valid, else the reason."""
        if not any(_type_ok(v, t) for t in self.types):
            return f"expected {' or '.join(self.types)}, got {_kind(v)}"
        if isinstance(v, float) and not math.isfinite(v):
            return "expected a finite number"
        if self.enum is not None and v not in self.enum:
            return f"expected one of {list(self.enum)}, got {v!r:.60}"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if self.minimum is not None and v < self.minimum:
                return f"must be >= {self.minimum:g}"
            if self.maximum is not None and v > self.maximum:
                return f"must be <= {self.maximum:g}"
            if self.exclusive_minimum is not None and v <= self.exclusive_minimum:
                return f"must be > {self.exclusive_minimum:g}"
            if self.exclusive_maximum is not None and v >= self.exclusive_maximum:
                return f"must be < {self.exclusive_maximum:g}"
        if isinstance(v, str):
            if self.min_length is not None and len(v) < self.min_length:
                return f"shorter than {self.min_length} characters"
            if self.max_length is not None and len(v) > self.max_length:
                return f"longer than {self.max_length} characters"
        return None


@dataclass(frozen=True)
class InputSchema:
    """Fields in model order. ``positional``: rows may also be lists of values in that order."""

    fields: tuple[InputField, ...]
    additional_properties: bool = False
    positional: bool = False

    def __post_init__(self) -> None:
        if not self.fields:
            raise ConfigError("an input schema needs at least one field")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_sample(cls, sample: Any) -> InputSchema:
        """From example input: an object, a list of objects or ``{"instances": [...]}``."""
        rows = sample.get("instances") if isinstance(sample, dict) and "instances" in sample else sample
        rows = rows if isinstance(rows, list) else [rows]
        if not rows or not all(isinstance(r, dict) and r for r in rows):
            raise ConfigError("a sample must be a non-empty JSON object (or a list of them)")
        order: dict[str, set[str]] = {}
        for r in rows:
            for k, v in r.items():
                kind = _kind(v)
                if kind in ("array", "object"):
                    raise ConfigError(f"sample field {k!r} is an {kind}; served models take flat rows")
                order.setdefault(k, set()).add(kind)
        fields = []
        for name, kinds in order.items():
            required = all(name in r for r in rows)
            types = tuple(t for t in TYPES if t in kinds) if kinds != {"null"} else TYPES
            fields.append(InputField(name, types, required))
        return cls(tuple(fields))

    @classmethod
    def from_model(cls, model: Any) -> InputSchema | None:
        """From sklearn's ``feature_names_in_`` (named) or ``n_features_in_`` (``f0..fN``), numeric."""
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            return cls(tuple(InputField(str(n)) for n in list(names)), positional=True)
        n = getattr(model, "n_features_in_", None)
        if isinstance(n, int) and n > 0:
            return cls(tuple(InputField(positional_feature(i)) for i in range(n)), positional=True)
        return None

    @classmethod
    def from_json_schema(cls, doc: Any, *, source: str = "schema") -> InputSchema:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: a JSON Schema must be an object")
        bad = set(doc) - _TOP_KEYS
        if bad:
            raise ConfigError(f"{source}: unsupported JSON Schema keyword(s) {sorted(bad)}")
        if doc.get("type", "object") != "object":
            raise ConfigError(f"{source}: the top-level type must be 'object'")
        props = doc.get("properties")
        if not isinstance(props, dict) or not props:
            raise ConfigError(f"{source}: 'properties' must name the input fields")
        required = set(doc.get("required", []))
        unknown_req = required - set(props)
        if unknown_req:
            raise ConfigError(f"{source}: required field(s) {sorted(unknown_req)} not in properties")
        extra = doc.get("additionalProperties", True)
        if not isinstance(extra, bool):
            raise ConfigError(f"{source}: only a boolean additionalProperties is supported")
        fields = []
        for name, spec in props.items():
            where = f"{source}: properties.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(f"{where} must be an object")
            bad = set(spec) - _FIELD_KEYS
            if bad:
                raise ConfigError(f"{where}: unsupported keyword(s) {sorted(bad)}")
            types = spec.get("type", list(TYPES))
            types = [types] if isinstance(types, str) else types
            if not types or any(t not in TYPES for t in types):
                raise ConfigError(f"{where}: type must be among {', '.join(TYPES)}")
            enum = spec.get("enum")
            if "const" in spec:
                enum = [spec["const"]]
            fields.append(InputField(
                str(name), tuple(types), name in required, None if enum is None else tuple(enum),
                spec.get("minimum"), spec.get("maximum"), spec.get("exclusiveMinimum"),
                spec.get("exclusiveMaximum"), spec.get("minLength"), spec.get("maxLength")))
        return cls(tuple(fields), additional_properties=extra)

    @classmethod
    def load(cls, *, sample_path: str | None = None, schema_path: str | None = None) -> InputSchema | None:
        """From ``--sample`` or ``--schema`` files (JSON); None when neither is given."""
        if sample_path and schema_path:
            raise ConfigError("give --sample or --schema, not both")
        path = sample_path or schema_path
        if not path:
            return None
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_sample(doc) if sample_path else cls.from_json_schema(doc, source=str(path))

    def to_json_schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for f in self.fields:
            p: dict[str, Any] = {"type": list(f.types) if len(f.types) > 1 else f.types[0]}
            for key, val in (("enum", f.enum), ("minimum", f.minimum), ("maximum", f.maximum),
                             ("exclusiveMinimum", f.exclusive_minimum), ("exclusiveMaximum", f.exclusive_maximum),
                             ("minLength", f.min_length), ("maxLength", f.max_length)):
                if val is not None:
                    p[key] = list(val) if key == "enum" else val
            props[f.name] = p
        return {"type": "object", "properties": props, "required": [f.name for f in self.fields if f.required],
                "additionalProperties": self.additional_properties}

    # -- validation ---------------------------------------------------------------------------
    def validate_row(self, row: Any, where: str, issues: list[Issue]) -> dict[str, Any] | None:
        """A clean row dict, or None with issues appended (field paths prefixed by ``where``)."""
        prefix = f"{where}." if where else ""
        if isinstance(row, list) and self.positional:
            if len(row) != len(self.fields):
                issues.append((where or "$", f"expected {len(self.fields)} values, got {len(row)}"))
                return None
            row = dict(zip(self.names, row))
        if not isinstance(row, dict):
            issues.append((where or "$", f"expected an object of features, got {_kind(row)}"))
            return None
        before = len(issues)
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.name not in row or (row[f.name] is None and "null" not in f.types and not f.required):
                if f.required:
                    issues.append((prefix + f.name, "missing"))
                else:
                    out[f.name] = None
                continue
            reason = f.check(row[f.name])
            if reason:
                issues.append((prefix + f.name, reason))
            out[f.name] = row[f.name]
        extra = [k for k in row if k not in out and not any(k == f.name for f in self.fields)]
        if extra and not self.additional_properties:
            issues.extend((prefix + str(k), "unknown field") for k in extra[:5])
        return out if len(issues) == before else None

    def rows_from_predict(self, doc: Any) -> tuple[list[dict[str, Any]], bool, list[Issue]]:
        """``/predict`` bodies: an object (single), a list, or ``{"instances": [...]}``."""
        issues: list[Issue] = []
        if isinstance(doc, dict) and "instances" in doc:
            raw, single, where = doc["instances"], False, "instances"
            if not isinstance(raw, list) or not raw:
                return [], False, [("instances", "expected a non-empty list")]
        elif isinstance(doc, list):
            raw, single, where = doc, False, ""
            if not raw:
                return [], False, [("$", "expected at least one row")]
        else:
            raw, single, where = [doc], True, ""
        rows = []
        for i, r in enumerate(raw):
            clean = self.validate_row(r, "" if single else f"{where}[{i}]", issues)
            if clean is not None:
                rows.append(clean)
            if len(issues) >= MAX_ERRORS:
                break
        return rows, single, issues

    def rows_from_v2(self, doc: Any) -> tuple[list[dict[str, Any]], bool, list[Issue]]:
        """v2 ``inputs``: one tensor per field (shape [n] or [n, 1]), or one [n, k] tensor in field order."""
        tensors = doc.get("inputs") if isinstance(doc, dict) else None
        if not isinstance(tensors, list) or not tensors or not all(isinstance(t, dict) for t in tensors):
            return [], False, [("inputs", "expected a non-empty list of tensors")]
        for i, t in enumerate(tensors):
            if not isinstance(t.get("data"), list) or not isinstance(t.get("shape"), list):
                return [], False, [(f"inputs[{i}]", "each tensor needs 'name', 'shape' and 'data' lists")]
        flat = [(t.get("name"), _flatten(t["data"]), t["shape"]) for t in tensors]
        by_name = {name: data for name, data, _ in flat}
        if len(flat) == 1 and flat[0][0] not in self.names:
            name, data, shape = flat[0]
            k = len(self.fields)
            if len(shape) != 2 or shape[1] != k or len(data) != shape[0] * k:
                return [], False, [(f"inputs.{name}", f"expected shape [n, {k}] with n*{k} values")]
            raw: list[Any] = [dict(zip(self.names, data[i * k:(i + 1) * k])) for i in range(shape[0])]
        else:
            n = max(len(d) for _, d, _ in flat)
            if any(len(d) != n for _, d, _ in flat):
                return [], False, [("inputs", "every tensor needs the same number of rows")]
            raw = [{name: by_name[name][i] for name in by_name} for i in range(n)]
        issues: list[Issue] = []
        rows = []
        for i, r in enumerate(raw):
            clean = self.validate_row(r, f"inputs[row {i}]", issues)
            if clean is not None:
                rows.append(clean)
            if len(issues) >= MAX_ERRORS:
                break
        return rows, False, issues

    def to_matrix(self, rows: list[dict[str, Any]], model: Any) -> Any:
        """What the model's ``predict`` takes: a DataFrame when it knows column names or has string
        inputs (pipelines with encoders), else a float array in field order."""
        names = self.names
        strings = any("string" in f.types or "boolean" in f.types for f in self.fields)
        if getattr(model, "feature_names_in_", None) is not None or strings:
            import pandas as pd

            return pd.DataFrame([[r.get(n) for n in names] for r in rows], columns=names)
        import numpy as np

        return np.array([[np.nan if r.get(n) is None else r.get(n) for n in names] for r in rows], dtype=float)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in data:
        if isinstance(x, list):
            out.extend(_flatten(x))
        else:
            out.append(x)
    return out
