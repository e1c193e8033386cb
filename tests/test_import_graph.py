"""The import graph between driftline's packages has no cycle and follows the declared layers.

Read from the source, not from ``sys.modules``: every ``.py`` file under the folders that
``pyproject.toml`` maps to ``driftline.*`` is parsed with :mod:`ast`, and every import counts,
wherever it is written: module level, inside a function (the lazy imports that keep
``driftline --help`` fast), under ``TYPE_CHECKING``, ``importlib.import_module("driftline...")``
and the module names a module lists in a module-level table for importlib to load later
(``COMMAND_MODULES`` of the command line, the ``_EXPORTS`` of a lazy package surface). A child
process started as ``python -m driftline.cli`` is not an import and does not count, nor does
``importlib.util.find_spec`` (it looks a package up without running it). Importing a submodule
also runs its parents' ``__init__``; those are lazy surfaces (``sdk/lazy.py``), so that is not
counted as an edge either.

Each module belongs to one node of the graph (:data:`LAYERS`); an import from a node to itself
is free, an import to another node must go to a lower layer. The contract and the error tree
are at the bottom, the CLI at the top; nodes on the same layer do not import each other.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Bottom first. A node is a module or a package prefix; a module belongs to the longest node
# that is a prefix of its name (driftline.sdk.contract.wire -> driftline.sdk.contract).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("driftline.sdk.errors",),
    ("driftline.sdk.contract",),
    ("driftline.sdk",),
    ("driftline.collector.store",),
    ("driftline.collector", "driftline.detectors", "driftline.alerting"),
    ("driftline.dashboard",),
    ("driftline.cli",),
)
LIGHT_SDK = ("driftline.sdk.errors", "driftline.sdk.contract", "driftline.sdk")
SERVER = ("driftline.collector.store", "driftline.collector", "driftline.detectors", "driftline.alerting",
          "driftline.dashboard", "driftline.cli")

_IMPORT_FUNCTIONS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Edge:
    """One import: ``module`` (at ``path:line``) imports ``target``; ``dangling`` when no module
    of that name exists (a stale name left behind by a move)."""

    module: str
    path: str
    line: int
    target: str
    dangling: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.module}) imports {self.target}"


# -- reading the source -------------------------------------------------------------------------

def package_roots(repo: Path = REPO) -> dict[str, Path]:
    """``driftline.*`` package -> folder, from ``[tool.setuptools] package-dir`` in pyproject.toml."""
    with (repo / "pyproject.toml").open("rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {name: repo / folder for name, folder in package_dir.items()}


def find_modules(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Every module under ``roots`` (subpackages included): dotted name -> file."""
    modules: dict[str, Path] = {}
    for package, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(not (root.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(len(parts))):
                continue  # not inside a package (a stray script or data folder)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _relative_base(module: str, is_package: bool, level: int) -> str:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    return ".".join(parts[: len(parts) - level + 1])


def _string_prefix(node: ast.expr) -> str | None:
    """The module name in ``import_module(...)``'s argument; for an f-string, its literal head
    up to the last complete dot (``f"driftline.dashboard.page_{name}"`` -> ``driftline.dashboard``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        head = str(node.values[0].value)
        return head.rpartition(".")[0] if "." in head else None
    return None


def _table_strings(node: ast.expr) -> Iterable[ast.Constant]:
    """String constants in a literal table (dict, tuple, list, set; nested), except the module
    after a ``"-m"``, which names a process to start."""
    if isinstance(node, ast.Dict):
        items: list[ast.expr] = [v for v in node.values if v is not None]
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = list(node.elts)
    else:
        return
    after_dash_m = False
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            if not after_dash_m:
                yield item
            after_dash_m = item.value == "-m"
        else:
            after_dash_m = False
            yield from _table_strings(item)


def module_imports(module: str, path: Path, modules: Mapping[str, Path], repo: Path = REPO) -> list[Edge]:
    """Every import of another driftline module that ``path`` makes (see the module docstring)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    rel = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
    packages = {m.split(".")[1] for m in modules}
    found: list[tuple[int, str]] = []  # (line, a name that must be a module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(p for p in (_relative_base(module, is_package, node.level), node.module) if p)
            for alias in node.names:
                member = f"{base}.{alias.name}"
                found.append((node.lineno, member if member in modules else base))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _IMPORT_FUNCTIONS:
                target = _string_prefix(node.args[0])
                if target:
                    found.append((node.lineno, target))
    for stmt in tree.body:  # module-level tables of module names, loaded later by importlib
        value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
        if value is not None:
            found += [(c.lineno, c.value) for c in _table_strings(value)
                      if c.value.startswith("driftline.") and c.value.split(".")[1] in packages]
    edges = []
    for line, name in found:
        if not name.startswith("driftline."):
            continue
        if name in modules:
            if name != module:
                edges.append(Edge(module, rel, line, name))
        else:
            edges.append(Edge(module, rel, line, name, dangling=True))
    return edges


# -- the graph ----------------------------------------------------------------------------------

def node_of(module: str, nodes: Iterable[str]) -> str | None:
    best = None
    for node in nodes:
        if (module == node or module.startswith(node + ".")) and (best is None or len(node) > len(best)):
            best = node
    return best


def node_graph(edges: Iterable[Edge], nodes: Iterable[str]) -> dict[tuple[str, str], list[Edge]]:
    """(from node, to node) -> the imports that make that edge; imports inside a node are left out."""
    nodes = tuple(nodes)
    graph: dict[tuple[str, str], list[Edge]] = {}
    for edge in edges:
        if edge.dangling:
            continue
        src, dst = node_of(edge.module, nodes), node_of(edge.target, nodes)
        if src is None or dst is None:
            raise AssertionError(f"{edge}: module outside every node of LAYERS; add its package there")
        if src != dst:
            graph.setdefault((src, dst), []).append(edge)
    return graph


def find_cycle(pairs: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph as ``[a, b, ..., a]``, or None (depth-first search)."""
    succ: dict[str, list[str]] = {}
    for a, b in pairs:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(succ[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        path.pop()
        state[n] = 2
        return None

    for n in sorted(succ):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def describe(cycle: list[str], graph: Mapping[tuple[str, str], list[Edge]]) -> str:
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        lines.append(f"  {a} -> {b}:")
        lines += [f"    {e}" for e in graph.get((a, b), [])]
    return "\n".join(lines)


# -- the real tree ------------------------------------------------------------------------------

NODES = tuple(n for layer in LAYERS for n in layer)
LAYER_OF = {n: i for i, layer in enumerate(LAYERS) for n in layer}


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return find_modules(package_roots())


@pytest.fixture(scope="module")
def edges(modules: dict[str, Path]) -> list[Edge]:
    return [e for name, path in modules.items() for e in module_imports(name, path, modules)]


@pytest.fixture(scope="module")
def graph(edges: list[Edge]) -> dict[tuple[str, str], list[Edge]]:
    return node_graph(edges, NODES)


def test_every_module_named_exists(edges: list[Edge]) -> None:
    # A stale name would hide an edge from this test; in COMMAND_MODULES it silently drops a command.
    dangling = [str(e) for e in edges if e.dangling]
    assert not dangling, "imports of modules that do not exist:\n" + "\n".join(dangling)


def test_every_package_is_read(modules: dict[str, Path], graph: dict[tuple[str, str], list[Edge]]) -> None:
    # Not vacuous: every node has modules, and the command line reaches every package's commands.
    for node in NODES:
        assert any(node_of(m, NODES) == node for m in modules), f"no module belongs to {node}"
    assert {dst for src, dst in graph if src == "driftline.cli"} >= {
        "driftline.sdk", "driftline.collector", "driftline.collector.store", "driftline.detectors",
        "driftline.alerting", "driftline.dashboard"}


def test_no_cycle_between_packages(graph: dict[tuple[str, str], list[Edge]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages:\n" + describe(cycle, graph)


def test_imports_go_down_the_layers(graph: dict[tuple[str, str], list[Edge]]) -> None:
    upward = [f"{a} (layer {LAYER_OF[a]}) -> {b} (layer {LAYER_OF[b]}):\n" + "\n".join(f"    {e}" for e in edges)
              for (a, b), edges in sorted(graph.items()) if LAYER_OF[b] >= LAYER_OF[a]]
    assert not upward, "imports that do not go down the layers (tests/test_import_graph.py LAYERS):\n" + "\n".join(upward)


def test_the_light_sdk_imports_no_server_package(graph: dict[tuple[str, str], list[Edge]]) -> None:
    bad = [str(e) for (a, b), edges in sorted(graph.items()) if a in LIGHT_SDK and b in SERVER for e in edges]
    assert not bad, "the light SDK imports server packages:\n" + "\n".join(bad)


# -- the checker itself -------------------------------------------------------------------------

def test_find_cycle_finds_one_and_only_one_that_exists() -> None:
    assert find_cycle([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert find_cycle([("a", "b"), ("b", "c"), ("a", "c")]) is None


def test_the_checker_finds_a_cycle_made_by_lazy_and_importlib_imports(tmp_path: Path) -> None:
    # A synthetic tree: low -> high through a function-level import, high -> low through a
    # COMMAND_MODULES-style table; mid -> low by importlib, and a "-m" child process (not an import).
    for pkg in ("low", "high", "mid"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text('"""x"""\n')
    (tmp_path / "low" / "a.py").write_text("def f():\n    from driftline.high.b import g\n    return g\n")
    (tmp_path / "high" / "b.py").write_text(
        'COMMANDS = (("driftline.low.a", "a"), ("driftline.low.gone", "g"), ("driftline.topic", "t"))\n\n'
        'def g():\n    pass\n')
    (tmp_path / "mid" / "c.py").write_text(
        'import importlib\nfrom ..low import a\nARGS = ["python", "-m", "driftline.high.b"]\n'
        'def h():\n    return importlib.import_module("driftline.low.a")\n')
    roots = {f"driftline.{p}": tmp_path / p for p in ("low", "high", "mid")}
    modules = find_modules(roots)
    edges = [e for name, path in modules.items() for e in module_imports(name, path, modules, repo=tmp_path)]
    assert {(e.module, e.target, e.line, e.dangling) for e in edges} == {
        ("driftline.low.a", "driftline.high.b", 2, False), ("driftline.high.b", "driftline.low.a", 1, False),
        ("driftline.high.b", "driftline.low.gone", 1, True),
        ("driftline.mid.c", "driftline.low.a", 2, False), ("driftline.mid.c", "driftline.low.a", 5, False)}
    graph = node_graph(edges, ("driftline.low", "driftline.high", "driftline.mid"))
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"driftline.low", "driftline.high"}
    assert "low/a.py:2 (driftline.low.a) imports driftline.high.b" in describe(cycle, graph)
