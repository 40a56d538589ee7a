"""The dashboard's numbers as the reports read them: tidy rows, grouped into parts and tables.

The input is the export's tidy rows ``(section, name, dimension, value, unit, time_range)``
(docs/reports.md): one row per number of the dashboard, its unit given by the row. Every report
format is built from them, so a new section or field reaches every format without a change here.

- A :class:`Figure` is one row with its dimension split back into its parts.
- A :class:`Part` is what a report shows under one heading: a section, or one funnel of the
  ``funnels`` section (a mapping of funnel name to section), whose figures then have the funnel's
  name taken off their dimension.
- A :class:`Table` is the figures of one list in a part (``top_pages``, ``steps``, ...): one line
  per dimension, one column per name; :func:`pivot` makes one such table of a whole section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Row = tuple[str, str, str, int | float, str, str]  # section, name, dimension, value, unit, time_range

# The dashboard object's own fields (docs/reports.md); every other key is a section.
DASHBOARD_HEADER = ("time_range", "generated_at", "sources")
# A section's figures about its sources (their data's age) are bookkeeping, not findings.
SOURCES_PREFIX = "sources."


@dataclass(frozen=True)
class Figure:
    name: str  # the dotted field path, e.g. "features.adoption_rate"
    dimension: tuple[str, ...]  # outermost first; () for a figure of the whole part
    value: int | float
    unit: str


@dataclass(frozen=True)
class Column:
    name: str
    unit: str


@dataclass
class Table:
    """Figures sharing a list: ``lines[dimension][name] = value``, lines and columns in row order."""

    group: str  # the list's name (the first part of its figures' names); "" for a whole section
    depth: int  # how many dimension parts label a line
    columns: list[Column] = field(default_factory=list)
    lines: dict[tuple[str, ...], dict[str, int | float]] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        if all(column.name != figure.name for column in self.columns):
            self.columns.append(Column(figure.name, figure.unit))
        self.lines.setdefault(figure.dimension, {})[figure.name] = figure.value

    @property
    def is_series(self) -> bool:
        """Whether every line is a point in time (its last dimension part a timestamp)."""
        return bool(self.lines) and all(dimension and is_timestamp(dimension[-1]) for dimension in self.lines)

    def column_label(self, column: Column) -> str:
        """The column's name without the list's own name in front."""
        return column.name.removeprefix(f"{self.group}.") if self.group != column.name else column.name


@dataclass(frozen=True)
class Part:
    """A section, or one funnel of a section keyed by funnel name, with its figures."""

    section: str
    key: str | None  # the funnel's name within a keyed section
    body: Mapping[str, Any]  # the section object, or its error envelope
    figures: tuple[Figure, ...]

    @property
    def error(self) -> str | None:
        """Why the part could not be served, when it is an error envelope."""
        return error_message(self.body)

    def headline(self, names: Iterable[str] | None) -> list[Figure]:
        """The part's figures of the whole part named in ``names`` (in that order); every such
        figure but the sources' when ``names`` is None."""
        whole = {figure.name: figure for figure in self.figures if not figure.dimension}
        if names is None:
            return [figure for name, figure in whole.items() if not name.startswith(SOURCES_PREFIX)]
        return [whole[name] for name in names if name in whole]

    def tables(self) -> list[Table]:
        """The part's lists, each a table: figures grouped by their list and dimension depth."""
        tables: dict[tuple[str, int], Table] = {}
        for figure in self.figures:
            if figure.dimension and not figure.name.startswith(SOURCES_PREFIX):
                group = figure.name.split(".", 1)[0]
                key = (group, len(figure.dimension))
                tables.setdefault(key, Table(group, len(figure.dimension))).add(figure)
        return list(tables.values())


def split_dimension(dimension: str) -> tuple[str, ...]:
    """The parts of an export dimension: ``|`` separates them, ``\\`` escapes either character."""
    if not dimension:
        return ()
    parts, current = [], []
    characters = iter(dimension)
    for character in characters:
        if character == "\\":
            current.append(next(characters, ""))
        elif character == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return tuple(parts)


def is_timestamp(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 UTC instant as the API writes them (``...Z``)."""
    return text.endswith("Z") and parse_instant(text) is not None


def parse_instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def sections(dashboard: Mapping[str, Any]) -> list[str]:
    """The dashboard's section keys, in its order."""
    return [key for key in dashboard if key not in DASHBOARD_HEADER]


def figures_by_section(rows: Iterable[Row]) -> dict[str, list[Figure]]:
    by_section: dict[str, list[Figure]] = {}
    for section, name, dimension, value, unit, _ in rows:
        by_section.setdefault(section, []).append(Figure(name, split_dimension(dimension), value, unit))
    return by_section


def parts(dashboard: Mapping[str, Any], rows: Iterable[Row]) -> list[Part]:
    """Every part of the dashboard in its order; a section made of sections (funnels) gives one
    part per entry, in the section's order."""
    by_section = figures_by_section(rows)
    result = []
    for section in sections(dashboard):
        body, figures = dashboard[section], by_section.get(section, [])
        if is_keyed_section(body):
            for key, entry in body.items():
                own = tuple(Figure(f.name, f.dimension[1:], f.value, f.unit) for f in figures
                            if f.dimension[:1] == (key,))
                result.append(Part(section, key, entry, own))
        else:
            result.append(Part(section, None, body, tuple(figures)))
    return result


def error_message(body: Any) -> str | None:
    """The message of an error envelope (a section that could not be served); None for a section."""
    problem = body.get("error") if isinstance(body, Mapping) else None
    return str(problem.get("message", "unavailable")) if isinstance(problem, Mapping) else None


def is_keyed_section(body: Any) -> bool:
    """Whether a dashboard entry is a mapping of sections (funnels) rather than one section."""
    return isinstance(body, Mapping) and "generated_at" not in body and "error" not in body \
        and all(isinstance(entry, Mapping) for entry in body.values())


def pivot(figures: Iterable[Figure]) -> Table:
    """All ``figures`` (of one section) as one table: a line per dimension, a column per name; the
    figures of the whole section first, those about its sources last."""
    table = Table("", 0)
    for figure in sorted(figures, key=lambda f: (f.name.startswith(SOURCES_PREFIX), bool(f.dimension))):
        table.depth = max(table.depth, len(figure.dimension))
        table.add(figure)
    return table
