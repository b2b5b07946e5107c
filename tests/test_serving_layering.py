"""Layering of serving/export: no package cycle, and library code never imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tfmusic"


def imports_of(package: str) -> set[str]:
    """Every ``tfmusic.*`` module imported anywhere (also inside functions) in a package."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfmusic"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("tfmusic"))
    return found


def test_serving_never_imports_export_or_cli():
    bad = sorted(m for m in imports_of("serving") if m.startswith(("tfmusic.export", "tfmusic.cli")))
    assert not bad, f"tfmusic.serving imports {bad}"


def test_export_never_imports_cli():
    bad = sorted(m for m in imports_of("export") if m.startswith("tfmusic.cli"))
    assert not bad, f"tfmusic.export imports {bad}"
