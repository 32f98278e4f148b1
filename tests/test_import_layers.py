"""The package's import graph: no cycles, and no module importing from a layer above its own.

Every import counts: module-level, inside functions (late imports), under ``TYPE_CHECKING``, and
``import_module("addp_agent....")`` with a literal name. A unit is a subpackage (``engine``) or a top-level module
(``metrics``); modules of one unit may import each other (the cycle check still applies to them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "addp_agent"

# Bottom to top. A unit imports only from its own unit and from lower layers; units of one layer are independent.
LAYERS: list[set[str]] = [
    {"errors", "masks", "strict_schema"},  # plain helpers, no addp_agent imports but errors
    {"limits", "devices", "outputs_io"},  # bounds on user input, device names, writable and atomic output sets
    # user text, images, scores, extras, named presets (protocols, recipes), the domain check, confidence calibration
    {"text", "images", "metrics", "generalized_metrics", "depth_metrics", "extras", "presets", "domain", "reliability"},
    {"data"},  # data sets and the sample types
    {"engine"},  # the diffusion pipeline and what it returns
    {"models"},  # building, loading and bundling pipelines
    {"critic", "train"},  # critics (LLM/VLM, simulated); training and the training studies
    {"agent"},  # sessions: rounds, critiques, the loop
    {"eval", "tools"},  # evaluation over data sets; the tools and their adapters (OpenAI, LangChain, MCP)
    {"effects", "demo"},  # the ADDP-effects studies (train variants × seeds, samplers on val, score on test); the
    # web page (Gradio) over the tools
    {"cli"},  # `addp …`
    {"__main__", ""},  # `python -m addp_agent` and the package root's lazy exports
]


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of ``package`` (a package is named by its ``__init__``)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported dotted name, line) for every import statement and literal ``import_module`` call in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif _literal_import_module(node):
            yield node.args[0].value, node.lineno


def _literal_import_module(node: ast.AST) -> bool:
    """``import_module("a.b")`` (or ``importlib.import_module``) with a string literal."""
    return (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_module"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """Module → {imported module of the same package: line}, each name resolved to the deepest module it names."""
    known = modules(package)
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        edges = graph.setdefault(module, {})
        for name, line in imported_names(module, path):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.setdefault(name, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit(module: str) -> str:
    """``addp_agent.engine.pipeline`` → ``engine``; ``addp_agent.metrics`` → ``metrics``; the root → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, dict[str, int]], layers: list[set[str]]) -> list[str]:
    """Imports that reach a unit in the same layer or above; units missing from ``layers`` are violations too."""
    level = {name: k for k, names in enumerate(layers) for name in names}
    problems = sorted({f"{unit(m)} is in no layer (add it to LAYERS)" for m in graph if unit(m) not in level})
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            source, dest = unit(module), unit(target)
            if source == dest or source not in level or dest not in level:
                continue
            if level[dest] >= level[source]:
                where = "in the same layer as" if level[dest] == level[source] else "above"
                problems.append(f"{module}:{line} imports {target} ({dest!r} is {where} {source!r})")
    return problems


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


def test_no_module_imports_from_its_own_layer_or_above():
    assert layer_violations(import_graph(PACKAGE), LAYERS) == []


@pytest.fixture()
def toy(tmp_path) -> Path:
    """A small package with a late (function-level) upward import that closes a cycle, and a TYPE_CHECKING one."""
    root = tmp_path / "toy"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "low" / "base.py").write_text("def f():\n    from toy.high import g\n    return g\n")
    (root / "low" / "other.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                            "    from toy import high\nfrom . import base\n")
    (root / "high.py").write_text("from toy.low.base import f\n\ndef g():\n    return f\n")
    return root


def test_the_checks_find_late_cycles_and_upward_imports(toy):
    graph = import_graph(toy)
    assert graph["toy.low.other"] == {"toy.high": 3, "toy.low.base": 4}  # TYPE_CHECKING and relative imports count
    assert cycles(graph) == [["toy.high", "toy.low.base"]]
    problems = layer_violations(graph, [{"low"}, {"high"}, {""}])
    assert problems == ["toy.low.base:2 imports toy.high ('high' is above 'low')",
                        "toy.low.other:3 imports toy.high ('high' is above 'low')"]
    assert "toy.high:1 imports toy.low.base ('low' is in the same layer as 'high')" in layer_violations(
        graph, [{"low", "high"}, {""}])
    assert layer_violations(graph, [{"high"}, {""}]) == ["low is in no layer (add it to LAYERS)"]
