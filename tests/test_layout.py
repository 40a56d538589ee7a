"""The tests and the benchmarks share ``devtools/`` and never import each other (issue 13); the
shipped packages import none of the three (only ``exporter`` and ``api`` are packaged)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports by name (relative imports stay in its own package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("tests", {"bench"}),
    ("bench", {"tests"}),
    ("devtools", {"tests", "bench"}),
    ("exporter", {"tests", "bench", "devtools"}),
    ("api", {"tests", "bench", "devtools"}),
])
def test_no_package_imports_what_it_must_not(package, forbidden):
    imports = {path.relative_to(ROOT): imported_packages(path) & forbidden for path in (ROOT / package).rglob("*.py")}
    assert {str(path): found for path, found in imports.items() if found} == {}
