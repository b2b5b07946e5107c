"""The package layering (docs/ARCHITECTURE.md): imports point down, the library never imports the CLI,
no cycle between packages, serving never imports export, and modules stay small enough to read."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tfmusic"
MAX_LINES = 450  # ~400 with some slack; longer modules say why in their docstring ("Why one module:")


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _unit(module: str) -> str:
    """The layer a module belongs to: ``tfmusic.data.stems.x`` -> ``data``; top-level modules are their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(tree: ast.AST) -> set[str]:
    """Every ``tfmusic.*`` module imported anywhere in the file (also inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("tfmusic."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tfmusic."))
    return found


def _graph() -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, tree in _modules():
        src = _unit("tfmusic." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        for module in _imports(tree):
            dst = _unit(module)
            if dst != src:
                graph[src][dst].append(str(path.relative_to(ROOT.parent)))
    return graph


def test_library_never_imports_the_cli():
    bad = [f"{src} <- {files}" for src, targets in _graph().items() if src not in ("cli", "__main__")
           for dst, files in targets.items() if dst == "cli"]
    assert not bad, f"library code imports tfmusic.cli: {bad}"


def _reaches(graph: dict, start: str, goal: str) -> bool:
    """Whether ``goal`` is reachable from ``start`` along the import edges of ``graph``."""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_no_cycle_between_packages():
    graph = _graph()

    def reaches(start: str, goal: str) -> bool:
        return _reaches(graph, start, goal)

    cycles = [(a, b, graph[a][b][:2]) for a in graph for b in graph[a] if reaches(b, a)]
    assert not cycles, f"package cycles: {cycles}"


def test_serving_never_imports_export():
    assert "export" not in _graph()["serving"]


def test_long_modules_say_why():
    long = []
    for path, tree in _modules():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(tree) or ""
        if lines > MAX_LINES and "Why one module:" not in doc:
            long.append(f"{path.relative_to(ROOT.parent)} ({lines} lines)")
    assert not long, f"modules over {MAX_LINES} lines without 'Why one module:' in the docstring: {long}"


def _module_graph() -> dict[str, set[str]]:
    """Module -> the modules of its own package it imports (``__init__`` files left out: they gather)."""
    names = {".".join(("tfmusic",) + p.relative_to(ROOT).with_suffix("").parts) for p, _ in _modules()}
    graph: dict[str, set[str]] = defaultdict(set)
    for path, tree in _modules():
        if path.name == "__init__.py":
            continue
        src = ".".join(("tfmusic",) + path.relative_to(ROOT).with_suffix("").parts)
        found = set(_imports(tree))
        for node in ast.walk(tree):  # ``from tfmusic.pkg import module``
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("tfmusic"):
                found.update(f"{node.module}.{a.name}" for a in node.names)
        package = src.rsplit(".", 1)[0]
        graph[src] = {m for m in found if m in names and m != src and m.rsplit(".", 1)[0] == package}
    return graph


def test_no_cycle_between_modules_of_a_package():
    graph = _module_graph()

    def reaches(start: str, goal: str) -> bool:
        return _reaches(graph, start, goal)

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not cycles, f"module cycles inside a package (move what both need into a module of its own): {cycles}"
