"""The Grafana dashboards of ``grafana/dashboards/`` as data, for the lint and end-to-end tests.

Besides walking dashboards, panels and targets, this re-implements the one piece of Grafana both
tests need: how the Prometheus datasource writes template variables into a query (plain values
as they are, multi-value and "All" selections as an escaped regex alternation, or the
variable's ``allValue``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING_DIR = ROOT / "grafana" / "provisioning"

# $name, ${name} and the deprecated [[name]]; a ${name:format} is rejected by `interpolate`.
VARIABLE_REFERENCE = re.compile(r"\$\{(\w+)(?::([^}]*))?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)
# Characters Grafana escapes in a regex alternation (prometheusSpecialRegexEscape).
REGEX_SPECIALS = re.compile(r"[$^*{}\[\]'+?.()|]")


@dataclass(frozen=True)
class Query:
    """One PromQL target of one panel."""

    dashboard_uid: str
    panel_title: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard_uid}/{self.panel_title}/{self.ref_id}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves are left out."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(dashboard["uid"], panel.get("title", ""), target.get("refId", ""), target.get("expr", ""))


def all_queries() -> list[Query]:
    return [query for dashboard in load_dashboards().values() for query in queries(dashboard)]


def variable_query(variable: Mapping[str, Any]) -> str:
    """The query text of a query variable (Grafana stores it as a string or as an object)."""
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def parse_label_values(query: str) -> tuple[str | None, str]:
    """``label_values(selector, label)`` -> (selector, label); ``label_values(label)`` -> (None, label)."""
    match = LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")


def format_selection(variable: Mapping[str, Any], selected: Sequence[str], options: Sequence[str]) -> str:
    """What Grafana's Prometheus datasource writes for a variable's selection.

    ``selected`` is the chosen values, or ``["$__all"]`` for "All" (then ``options`` are all values).
    """
    if list(selected) == ["$__all"]:
        if variable.get("allValue"):
            return variable["allValue"]
        selected = options
    if not (variable.get("multi") or variable.get("includeAll")):
        (value,) = selected
        return value.replace("\\", "\\\\").replace("'", "\\\\'")
    escaped = [REGEX_SPECIALS.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\")) for value in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def variable_references(expr: str) -> set[str]:
    """The names of the variables ``expr`` refers to, in any of the three spellings."""
    return {braced or plain or legacy for braced, _, plain, legacy in VARIABLE_REFERENCE.findall(expr)}


def interpolate(expr: str, values: Mapping[str, str]) -> str:
    """Replace every variable reference in ``expr`` with its formatted value from ``values``."""

    def replace(match: re.Match[str]) -> str:
        braced, fmt, plain, legacy = match.groups()
        if fmt is not None:
            raise ValueError(f"variable format ':{fmt}' is not supported in queries: {expr!r}")
        name = braced or plain or legacy
        if name not in values:
            raise KeyError(f"no value for variable {name!r} in {expr!r}")
        return values[name]

    return VARIABLE_REFERENCE.sub(replace, expr)
