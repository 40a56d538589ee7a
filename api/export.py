"""``GET /api/v1/export/{format}`` and ``analytics-dashboard export``: the dashboard as a file.

``json`` is the dashboard object itself, serialized exactly as ``/api/v1/dashboard`` serializes
it. ``xlsx`` (a sheet per section) and ``pdf`` (a readable report) are rendered from the dashboard
and its tidy rows by :mod:`exporter.reports.render` (docs/reports.md), in a worker thread; they
need the optional extra ``reports`` (501 naming it when it is not installed). ``csv`` is one tidy
table, a row per numeric leaf of every section::

    section,name,dimension,value,unit,time_range

- ``section``: the dashboard key (``usage_trends``, ..., ``funnels``).
- ``name``: the dotted path of field names from the section to the number, e.g. ``active_users``,
  ``features.adoption_rate``, ``experiments.variants.p_value``, ``steps.completion_rate_ci.low``.
  A list of items adds no index: the item's identifying fields (declared ``key=True``) become
  part of ``dimension``; a time-series point's ``value`` is named after its series
  (``users_over_time``); an interval ``[lo, hi]`` gives ``<field>.low`` and ``<field>.high``.
- ``dimension``: what the row is about, outermost first, joined by ``|`` (a literal ``|`` or
  ``\\`` in a label is escaped with ``\\``); empty for a section-wide figure. The parts are list
  items' identifying values (feature name, experiment id, variant id, step name, timestamp, a
  flagged day's series and day, ...),
  the keys of mappings keyed by data (``rating_distribution``, ``by_type``, ``srm.expected``,
  ``srm.observed``, the section's ``sources``), and, in a section with members (``funnels``),
  the member's name first.
- ``value``: the number as JSON has it (Python's shortest round-trip form).
- ``unit``: the unit the field is declared with (:mod:`exporter.results`): ``ratio`` (fraction
  0..1, differences of fractions and relative changes too), ``percent`` (0..100),
  ``probability``, ``seconds``, ``days``, ``users``, ``users_per_week``, ``count``, ``stars``
  (1..5), ``score`` (see the field's documentation for its scale), ``index`` (a position),
  ``number`` (a plain quantity, and any number of a free-form object such as ``definitions``).
- ``time_range``: the section's own ``time_range`` (empty where it takes none: experiments).

Nulls (undefined numbers), booleans and strings have no row; a section that could not be served
(an error envelope in the JSON) has none either. Rows follow the JSON's order, so two exports of
the same data are identical.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

from aiohttp import web

from exporter.areas.base import Area, SectionHeader
from exporter.areas.params import time_range
from exporter.reports import render as reports
from exporter.results import declaration, key_fields

from .dashboard import HEADER_FIELDS, build_dashboard
from .errors import ApiError
from .jsonio import dumps
from .keys import RESPONSES, SERVICE, WORKER
from .params import parse_query

EXPORT_QUERY = {"time_range": time_range("30d")}
TEXT_FORMATS = ("json", "csv")  # UTF-8 text; the others are binary files
FORMATS = (*TEXT_FORMATS, *reports.RENDERERS)
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv"} | reports.CONTENT_TYPES
CSV_HEADER = ("section", "name", "dimension", "value", "unit", "time_range")
SERIES_VALUE = "value"  # a point of a series: its value row is named after the series
DEFAULT_UNIT = "number"

Row = tuple[str, str, str, int | float, str, str]


@dataclass(frozen=True)
class Export:
    """A rendered export: the file's bytes, its media type and the download's file name."""

    body: bytes
    content_type: str
    filename: str


async def export(request: web.Request) -> web.Response:
    form = request.match_info["format"]
    if form not in FORMATS:
        raise ApiError(404, "unknown_format", f"no export format {form[:64]!r}; formats: {', '.join(FORMATS)}")
    params = parse_query(request, EXPORT_QUERY)
    service = request.app[SERVICE]
    dashboard = await build_dashboard(service, request.app[RESPONSES], params["time_range"])
    try:
        if form in reports.RENDERERS:
            rendered = await request.app[WORKER].run(render_export, service.areas, dashboard, form)
        else:  # milliseconds: not worth a thread
            rendered = render_export(service.areas, dashboard, form)
    except reports.ReportsExtraMissing as error:
        raise ApiError(501, "extra_not_installed", str(error)) from None
    return web.Response(body=rendered.body, content_type=rendered.content_type,
                        charset="utf-8" if form in TEXT_FORMATS else None,
                        headers={"Content-Disposition": f'attachment; filename="{rendered.filename}"'})


def render_export(areas: Mapping[str, Area], dashboard: Mapping[str, Any], form: str) -> Export:
    """The dashboard as ``form`` (one of :data:`FORMATS`), named after its range and generation
    time. Raises :class:`~exporter.reports.render.ReportsExtraMissing` for ``xlsx`` and ``pdf``
    without the extra; CPU-bound for those two (call it in a worker thread from the event loop)."""
    if form == "json":
        body = dumps(dashboard).encode()
    elif form == "csv":
        body = dashboard_csv(areas, dashboard).encode()
    else:
        body = reports.render(form, dashboard, dashboard_rows(areas, dashboard))
    return Export(body, CONTENT_TYPES[form], export_filename(dashboard, form))


def export_filename(dashboard: Mapping[str, Any], form: str) -> str:
    """``analytics-dashboard-<time_range>-<YYYYmmddTHHMMSSZ>.<form>`` (the dashboard's generated_at)."""
    generated = datetime.fromisoformat(dashboard["generated_at"])
    return f"analytics-dashboard-{dashboard['time_range']}-{generated:%Y%m%dT%H%M%SZ}.{form}"


def dashboard_csv(areas: Mapping[str, Area], dashboard: Mapping[str, Any]) -> str:
    """The tidy table (module docstring) with its header, RFC 4180 line endings."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    writer.writerows(dashboard_rows(areas, dashboard))
    return out.getvalue()


def dashboard_rows(areas: Mapping[str, Area], dashboard: Mapping[str, Any]) -> Iterator[Row]:
    """``(section, name, dimension, value, unit, time_range)`` for every numeric leaf of every
    section served (an error envelope has none)."""
    for section, body in dashboard.items():
        if section in HEADER_FIELDS:
            continue
        area = areas[section]
        served = body.items() if area.member else [(None, body)]
        for member, part in served:
            if "error" in part:
                continue
            outer = () if member is None else (member,)
            range_label = part.get("time_range") or ""
            for path, dimension, value, unit in section_leaves(part, area.result):
                yield section, ".".join(path), join_dimension((*outer, *dimension)), value, unit, range_label


def section_leaves(part: Mapping[str, Any], result: type) -> Iterator[tuple[tuple[str, ...], tuple[str, ...],
                                                                               int | float, str]]:
    """Every number of a section (its header's and its body's) with its path, dimension and unit."""
    header = {field.name for field in dataclasses.fields(SectionHeader)}
    for name, value in part.items():
        owner = SectionHeader if name in header else result
        field = next(f for f in dataclasses.fields(owner) if f.name == name)
        yield from typed_leaves(value, typing.get_type_hints(owner)[name], (name,), (), declaration(field).unit)


def typed_leaves(value: Any, hint: Any, path: tuple[str, ...], dimension: tuple[str, ...], unit: Any
                 ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], int | float, str]]:
    """The numbers under ``value``, read by its declared type ``hint``; ``unit`` is the nearest
    declared one (a container's applies to the numbers in it that declare none)."""
    if isinstance(value, bool | str) or value is None:
        return
    hint = _without_none(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(value, int | float):
        yield path, dimension, value, unit.name if unit is not None else DEFAULT_UNIT
    elif dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        for field in dataclasses.fields(hint):
            declared = declaration(field)
            if declared.flatten:  # its fields are this object's
                yield from typed_leaves(value, hints[field.name], path, dimension, declared.unit or unit)
            elif field.name in value:
                yield from typed_leaves(value[field.name], hints[field.name], (*path, field.name), dimension,
                                        declared.unit or unit)
    elif origin is tuple and len(args) == 2 and args[1] is not Ellipsis:  # an interval
        for bound, item in zip(("low", "high"), value):
            yield from typed_leaves(item, args[0], (*path, bound), dimension, unit)
    elif origin in (tuple, list):
        yield from _items(value, args[0], path, dimension, unit)
    elif origin is dict:  # keyed by data: the key is part of the dimension
        for key, item in value.items():
            yield from typed_leaves(item, args[1], path, (*dimension, str(key)), unit)
    else:  # free-form (Any): field names from the data, positions for list items
        yield from _free_form(value, path, dimension)


def _items(items: list[Any], hint: Any, path: tuple[str, ...], dimension: tuple[str, ...], unit: Any
           ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], int | float, str]]:
    keys = key_fields(hint) if dataclasses.is_dataclass(hint) else ()
    for position, item in enumerate(items):
        if not keys or not isinstance(item, Mapping):
            yield from typed_leaves(item, hint, path, (*dimension, str(position)), unit)
            continue
        label = (*dimension, *(str(item[key]) for key in keys))
        rest = {name: value for name, value in item.items() if name not in keys}
        if rest.keys() == {SERIES_VALUE}:  # a point of a series stands for its value
            field = next(f for f in dataclasses.fields(hint) if f.name == SERIES_VALUE)
            yield from typed_leaves(rest[SERIES_VALUE], typing.get_type_hints(hint)[SERIES_VALUE], path, label,
                                    declaration(field).unit or unit)
        else:
            yield from typed_leaves(rest, hint, path, label, unit)


def _free_form(value: Any, path: tuple[str, ...], dimension: tuple[str, ...]
               ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], int | float, str]]:
    if isinstance(value, bool | str) or value is None:
        return
    if isinstance(value, int | float):
        yield path, dimension, value, DEFAULT_UNIT
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _free_form(item, (*path, str(key)), dimension)
    else:
        for position, item in enumerate(value):
            yield from _free_form(item, path, (*dimension, str(position)))


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def join_dimension(parts: tuple[str, ...]) -> str:
    return "|".join(part.replace("\\", "\\\\").replace("|", "\\|") for part in parts)
