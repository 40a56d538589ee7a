"""The house's layout, read from the code's own imports (``ast``, function-level imports included).

Imports point down: analysis is pure, clients only fetch, areas get a narrow context and never
reach back into the wiring or the collectors, collectors are given what they read, and nothing
in production needs the demo. No two modules import each other, directly or around a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("exporter", "api")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (a package's ``__init__`` for ``from package import x``
    unless ``x`` is a module of it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {module for module in found if module in known and module != name}


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def under(module: str, *prefixes: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


# part -> the parts it must never import, and why
NEVER = {
    "exporter.analysis": (("exporter.sources", "exporter.areas", "exporter.events", "exporter.collectors",
                           "exporter.service", "exporter.rendering", "exporter.demo", "api"),
                          "analysis is pure: numbers in, numbers out"),
    "exporter.sources": (("exporter.analysis", "exporter.areas", "exporter.collectors", "exporter.service",
                          "exporter.demo", "api"), "a client fetches; it neither analyses nor knows the areas"),
    "exporter.events": (("exporter.areas", "exporter.collectors", "exporter.service", "exporter.rendering",
                         "exporter.demo", "api"), "the events backends answer questions; they serve no area"),
    "exporter.areas": (("exporter.service", "exporter.rendering", "exporter.collectors", "exporter.demo", "api"),
                       "an area gets a narrow context, never the service, the collectors or a front end"),
    "exporter.collectors": (("exporter.service", "exporter.rendering", "exporter.demo", "api"),
                            "collectors are given what they read; /metrics needs no HTTP layer"),
    "exporter.reports": (("exporter.sources", "exporter.events", "exporter.areas", "exporter.collectors",
                          "exporter.service", "exporter.rendering", "exporter.demo", "api"),
                         "reports render and send the dashboard object they are given; they fetch nothing"),
    "api": (("exporter.demo",), "production never needs the demo"),
}


@pytest.mark.parametrize("part", sorted(NEVER))
def test_imports_point_down(part):
    forbidden, why = NEVER[part]
    broken = sorted((module, target) for module, targets in GRAPH.items() if under(module, part)
                    for target in targets if under(target, *forbidden))
    assert broken == [], why


def test_only_the_command_and_the_demo_itself_import_the_demo():
    importers = {module for module, targets in GRAPH.items() if any(under(t, "exporter.demo") for t in targets)}
    assert {module for module in importers if not under(module, "exporter.demo")} == {"exporter.cli"}


def test_no_import_circle():
    circles = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                circles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_checks_can_fail():
    # The graph is read, not assumed: it holds the imports a reader sees in the code.
    assert "exporter.areas.base" in GRAPH["exporter.areas.usage"]
    assert "exporter.areas" in GRAPH["exporter.service"] and "api.keys" in GRAPH["api.routes"]
