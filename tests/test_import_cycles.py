"""No import cycle in gatelab outside engine/: the module-level import graph (top-level ``import``
and ``from`` statements only: an import inside a function runs late, on purpose), at file level
and at package level, has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import gatelab

ROOT = Path(gatelab.__file__).parent


def _module(path: Path) -> str:
    parts = ["gatelab", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    # ``from .pkg import name``: the name may be a module of the package
    return [stem, *(f"{stem}.{a.name}" for a in node.names)]


def import_graph() -> nx.DiGraph:
    """Edges module -> gatelab module it imports at module level."""
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        top += [n for b in tree.body if isinstance(b, ast.If) and "TYPE_CHECKING" not in
                ast.unparse(b.test) for n in b.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        top += [n for b in tree.body if isinstance(b, ast.Try)
                for n in b.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top:
            stem, *names = _targets(node, mod, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom) and names and all(n in files for n in names):
                targets = names  # ``from . import shapes``: the modules, not the package
            else:
                targets = [stem, *names]
            for t in targets:
                if t in files and t != mod:
                    graph.add_edge(mod, t)
    return graph


def _package(mod: str) -> str:
    """``gatelab.train.loop`` -> ``gatelab.train``; top-level modules are their own package."""
    parts = mod.split(".")
    return ".".join(parts[:2])


def package_graph(graph: nx.DiGraph) -> nx.DiGraph:
    packages = nx.DiGraph()
    for a, b in graph.edges:
        pa, pb = _package(a), _package(b)
        if pa != pb and pa != "gatelab" and pb != "gatelab":
            packages.add_edge(pa, pb)
    return packages


def _cycles(graph: nx.DiGraph) -> list[list[str]]:
    return [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]


def test_no_file_level_cycle_outside_engine() -> None:
    outside = [c for c in _cycles(import_graph())
               if not all(m.startswith("gatelab.engine.") for m in c)]
    assert outside == []


def test_no_package_level_cycle() -> None:
    assert _cycles(package_graph(import_graph())) == []


def test_the_graph_sees_imports() -> None:
    """The graph is not empty by mistake: known edges are there, a function's import is not."""
    graph = import_graph()
    assert graph.has_edge("gatelab.train.trainer", "gatelab.train.config")
    assert graph.has_edge("gatelab.cell.build_shapes", "gatelab.cell.shapes")
    assert not graph.has_edge("gatelab.train.cli", "gatelab.train.trainer")  # inside a command


@pytest.mark.parametrize("package", ["gatelab.engine"])
def test_report_engine_cycles(package: str) -> None:
    """engine/ is [kernel]'s to untangle: its cycles are listed here (printed with -s)."""
    inside = [c for c in _cycles(import_graph()) if all(m.startswith(package) for m in c)]
    print(f"{package} file-level cycles: {inside}")
