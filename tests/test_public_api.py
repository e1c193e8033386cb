"""STYLE point 1: every package's public surface is what the README documents, and it resolves."""

from __future__ import annotations

import importlib

import pytest

PROMISED = {
    "driftline.sdk": {"Monitor", "Client", "InMemoryExporter", "KafkaExporter", "SdkSettings", "SchemaError", "ConfigError",
                      "validate_event", "uuid7"},
    "driftline.collector": {"CollectorSettings", "run_collector", "start_chstore", "start_broker", "Scrubber",
                            "ScrubConfig", "delete_rows", "migrate", "connect"},
    "driftline.collector.pii": {"Scrubber", "ScrubConfig", "ModelPolicy", "load_hash_key", "hash_value"},
    "driftline.collector.embedded": {"Stack", "StackOptions", "start_broker", "start_chstore"},
    "driftline.detectors": {"DetectorEngine", "MetricRow", "DetectorsConfig", "load_config", "Reference",
                            "ReferenceStore", "from_dataframe", "from_file"},
    "driftline.alerting": {"verify_signature", "sign", "SIGNATURE_HEADER"},
    "driftline.dashboard": {"DashboardSettings", "link"},
}


@pytest.mark.parametrize("package", sorted(PROMISED))
def test_all_lists_the_documented_names_and_each_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert PROMISED[package] <= set(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


# -- the README's "Python API" section is the promise; __all__ must be exactly it ------------------

import ast  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
SOURCE_FOLDERS = ("sdk", "collector", "detectors", "alerting", "dashboard", "cli")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _documented() -> dict[str, set[str]]:
    """package -> names, from the README table (``| `driftline.x` | `A`, `b` |``)."""
    out: dict[str, set[str]] = {}
    for package, names in re.findall(r"^\| `(driftline[\w.]*)` \| (.*) \|$", _section("Python API"), re.M):
        out[package] = set(re.findall(r"`(\w+)`", names))
    out["driftline.sdk.errors"] = {name for _, name, _ in _error_tree()}
    return out


def _error_tree() -> list[tuple[int, str, str | None]]:
    """(depth, class name, builtin base or None) per line of the README's error tree."""
    block = re.search(r"```\n(DriftlineError\n.*?)```", _section("Python API"), re.S)
    assert block, "README: the error tree block under 'Python API' is missing"
    out = []
    for line in block.group(1).splitlines():
        m = re.match(r"^((?:│   |    )*)(?:[├└]── )?(\w+)(?: \((\w+)\))?", line)
        assert m, line
        depth = len(m.group(1)) // 4 + (0 if line.startswith("DriftlineError") else 1)
        out.append((depth, m.group(2), m.group(3)))
    return out


def _pyproject_packages() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


@pytest.mark.parametrize("package", sorted(_documented()))
def test_all_is_exactly_what_the_readme_documents_and_each_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    documented = _documented()[package]
    exported = set(module.__all__)
    assert exported == documented, (f"{package}: in __all__ but not in README's 'Python API': "
                                    f"{sorted(exported - documented)}; documented but not exported: "
                                    f"{sorted(documented - exported)}")
    assert len(module.__all__) == len(exported), f"{package}: a name twice in __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_every_package_has_a_row_in_the_readme() -> None:
    # A new subpackage documents its public surface (or says it has none) when it is added.
    assert _pyproject_packages() | {"driftline.sdk.errors"} == set(_documented())


def test_names_the_docs_use_are_documented_exports() -> None:
    documented = _documented()
    used: set[tuple[str, str, str]] = set()
    for doc, text in DOCS.items():
        for module, names in re.findall(r"from (driftline[\w.]*) import ([\w, ]+)", text):
            used |= {(doc, module, n.strip()) for n in names.split(",") if n.strip()}
        for module, name in re.findall(r"\b(driftline(?:\.[a-z_]+)+)\.([A-Za-z_]\w*)\(", text):
            used.add((doc, module, name))
    assert ("README.md", "driftline.sdk", "Monitor") in used  # the parser sees the examples
    missing = [(doc, m, n) for doc, m, n in sorted(used) if m in documented and n not in documented[m]]
    assert not missing, f"used in the docs but not a documented export: {missing}"


def test_the_error_tree_in_the_readme_is_the_one_in_sdk_errors() -> None:
    from driftline.sdk import errors

    tree = _error_tree()
    assert tree[0][:2] == (0, "DriftlineError")
    assert {name for _, name, _ in tree} == set(errors.__all__)
    parents: list[type] = []
    for depth, name, builtin in tree:
        cls = getattr(errors, name)
        parents[depth:] = [cls]
        if depth:
            assert cls.__bases__[0] is parents[depth - 1], f"{name}: README puts it under {parents[depth - 1].__name__}"
        if builtin:
            assert issubclass(cls, getattr(__import__("builtins"), builtin)), f"{name} is not a {builtin}"
        assert cls.__doc__, f"{name} has no docstring"


def _exception_classes() -> list[tuple[Path, int, str, list[str], list[str]]]:
    """(file, line, class, base names, the comment lines just above) for every class whose base
    is named like an exception, in every source folder."""
    out = []
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                if not any(b.endswith(("Error", "Exception", "GiveUp", "Unsupported")) for b in bases):
                    continue
                above = []
                i = node.lineno - 2
                while i >= 0 and lines[i].lstrip().startswith("#"):
                    above.insert(0, lines[i])
                    i -= 1
                out.append((path.relative_to(ROOT), node.lineno, node.name, bases, above))
    return out


def test_every_driftline_error_is_defined_in_the_tree_and_local_exceptions_say_why() -> None:
    from driftline.sdk import errors

    found = _exception_classes()
    assert any(name == "BodyTooLarge" for _, _, name, _, _ in found), "the scan finds nothing: it is broken"
    tree = set(errors.__all__)
    outside = [f"{path}:{line} {name}" for path, line, name, bases, _ in found
               if path != Path("sdk/errors.py") and tree & set(bases)]
    assert not outside, f"driftline errors defined outside sdk/errors.py: {outside}"
    silent = [f"{path}:{line} {name}" for path, line, name, bases, above in found
              if path != Path("sdk/errors.py") and not any("not in the error tree" in c.lower() for c in above)]
    assert not silent, ("exceptions outside the error tree need a comment right above them saying why "
                        f"they never reach users ('not in the error tree'): {silent}")


def test_the_light_sdk_surface_stays_light() -> None:
    # Every public name of driftline.sdk except KafkaExporter (kafka-python, imported on first use).
    code = ("import sys, driftline.sdk as s\n"
            "[getattr(s, n) for n in s.__all__ if n != 'KafkaExporter']\n"
            "print([m for m in ('numpy', 'pandas', 'aiohttp', 'aiokafka', 'presidio_analyzer', 'chdb', 'streamlit',"
            " 'clickhouse_connect') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
