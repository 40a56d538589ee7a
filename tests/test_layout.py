"""The tests and the benchmarks share ``devtools/`` and never import each other (issue 13); the
shipped packages import none of the three (only ``exporter`` and ``api`` are packaged)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The package an import statement names (a line-based reading: far cheaper than parsing every
# module, and import statements start their line).
IMPORTED = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.MULTILINE)


@pytest.mark.parametrize(("package", "forbidden"), [
    ("tests", {"bench"}),
    ("bench", {"tests"}),
    ("devtools", {"tests", "bench"}),
    ("exporter", {"tests", "bench", "devtools"}),
    ("api", {"tests", "bench", "devtools"}),
])
def test_no_package_imports_what_it_must_not(package, forbidden):
    imports = {path.relative_to(ROOT): set(IMPORTED.findall(path.read_text())) & forbidden
               for path in (ROOT / package).rglob("*.py")}
    assert {str(path): found for path, found in imports.items() if found} == {}
