"""``GET /api/v1/export/{format}`` and ``analytics-dashboard export``: the dashboard as a file.

``json`` is the dashboard object itself, serialized exactly as ``/api/v1/dashboard`` serializes
it. ``csv`` is one tidy table, a row per numeric leaf of every section::

    section,name,dimension,value,unit,time_range

- ``section``: the dashboard key (``usage_trends``, ..., ``funnels``).
- ``name``: the dotted path of field names from the section to the number, e.g. ``active_users``,
  ``features.adoption_rate``, ``experiments.variants.p_value``, ``steps.completion_rate_ci.low``.
  A list of items adds no index: the item's identifying field becomes part of ``dimension``
  (see ``ITEM_KEYS``); a time-series point's ``value`` is named after its series
  (``users_over_time``); an interval ``[lo, hi]`` gives ``<field>.low`` and ``<field>.high``.
- ``dimension``: what the row is about, outermost first, joined by ``|`` (a literal ``|`` or
  ``\\`` in a label is escaped with ``\\``); empty for a section-wide figure. The parts are list
  items' identifying values (feature name, experiment id, variant id, step name, timestamp, ...),
  the keys of mappings keyed by data (``rating_distribution``, ``by_type``, ``srm.expected``,
  ``srm.observed``, the section's ``sources``), and, in ``funnels``, the funnel's name first.
- ``value``: the number as JSON has it (Python's shortest round-trip form).
- ``unit``: from the field name (``unit_of``): ``ratio`` (fraction 0..1, differences of fractions
  and relative changes too), ``percent`` (0..100), ``probability``, ``seconds``, ``days``,
  ``users``, ``users_per_week``, ``count``, ``stars`` (1..5), ``score`` (see the field's
  documentation for its scale), ``index`` (a position), ``number`` (a plain quantity).
- ``time_range``: the section's own ``time_range`` (empty where it takes none: experiments).

Nulls (undefined numbers), booleans and strings have no row; a section that could not be served
(an error envelope in the JSON) has none either. Rows follow the JSON's order, so two exports of
the same data are identical.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Mapping

from aiohttp import web

from .dashboard import FUNNELS, HEADER_FIELDS, build_dashboard
from .errors import ApiError
from .jsonio import dumps
from .params import parse_query, time_range
from .routes import SERVICE

EXPORT_QUERY = {"time_range": time_range("30d")}
FORMATS = ("json", "csv")
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv"}
CSV_HEADER = ("section", "name", "dimension", "value", "unit", "time_range")

# The field that identifies an item of a list, by the list's name; other lists of objects are
# identified by their items' "timestamp" (time series) or, failing that, by position.
ITEM_KEYS = {
    "top_pages": "name", "traffic_sources": "name", "features": "feature_name", "experiments": "experiment_id",
    "variants": "variant_id", "segments": "segment_name", "power_user_curve": "days_active", "steps": "step_name",
    "by_category": "category", "rules": "segment",
}
# Objects whose keys are data (a rating, a type, a variant, a source) rather than field names.
KEYED_MAPPINGS = frozenset({"rating_distribution", "by_type", "expected", "observed", "sources"})
INTERVAL_SUFFIX = "_ci"
SERIES_VALUE = "value"

# First match on the last part of the row name wins; intervals take their field's unit.
UNIT_RULES = tuple((re.compile(pattern), unit) for pattern, unit in (
    (r"bounce_rate|percentage", "percent"),
    (r"p_value|p_value_pooled|sequential_p_value|adjusted_p_value|chance_to_beat_control|alpha", "probability"),
    ((r"users_over_time|users|.*_users|.*visitors|user_count|assignments|conversions|users_entered|"
      r"users_completed|required_sample_size|expected|observed"), "users"),
    ((r".*page_?views.*|visits|.*_uses|.*features.*|n_points|total|invalid_ratings|"
      r"rating_distribution|promoters|passives|detractors|positive|neutral|negative|unknown|count|by_type|"
      r"open_items.*|skipped_items"), "count"),
    ((r".*_rate|.*_ratio|csat|sample_progress|expected_loss|absolute_lift|relative_lift|relative_change|"
      r"confidence_interval_(low|high)|adoption_trend"), "ratio"),
    (r".*_seconds|.*_time|.*_time_to_next_step|avg_session_duration", "seconds"),
    (r".*_days(_.*)?", "days"),
    (r"slope", "users_per_week"),
    (r"average_rating", "stars"),
    (r"avg_engagement|score|average_compound", "score"),
    (r"step_number", "index"),
))
DEFAULT_UNIT = "number"


@dataclass(frozen=True)
class Export:
    """A rendered export: the file's text, its media type and the download's file name."""

    text: str
    content_type: str
    filename: str


async def export(request: web.Request) -> web.Response:
    form = request.match_info["format"]
    if form not in FORMATS:
        raise ApiError(404, "unknown_format", f"no export format {form[:64]!r}; formats: {', '.join(FORMATS)}")
    params = parse_query(request, EXPORT_QUERY)
    rendered = render_export(await build_dashboard(request.app[SERVICE], params["time_range"]), form)
    return web.Response(text=rendered.text, content_type=rendered.content_type,
                        headers={"Content-Disposition": f'attachment; filename="{rendered.filename}"'})


def render_export(dashboard: Mapping[str, Any], form: str) -> Export:
    """The dashboard as ``form`` (``json`` or ``csv``), named after its range and generation time."""
    text = dumps(dashboard) if form == "json" else dashboard_csv(dashboard)
    return Export(text, CONTENT_TYPES[form], export_filename(dashboard, form))


def export_filename(dashboard: Mapping[str, Any], form: str) -> str:
    """``analytics-dashboard-<time_range>-<YYYYmmddTHHMMSSZ>.<form>`` (the dashboard's generated_at)."""
    generated = datetime.fromisoformat(dashboard["generated_at"])
    return f"analytics-dashboard-{dashboard['time_range']}-{generated:%Y%m%dT%H%M%SZ}.{form}"


def dashboard_csv(dashboard: Mapping[str, Any]) -> str:
    """The tidy table (module docstring) with its header, RFC 4180 line endings."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    writer.writerows(dashboard_rows(dashboard))
    return out.getvalue()


def dashboard_rows(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str, str, int | float, str, str]]:
    """``(section, name, dimension, value, unit, time_range)`` for every numeric leaf."""
    for section, body in dashboard.items():
        if section in HEADER_FIELDS:
            continue
        served = body.items() if section == FUNNELS else [(None, body)]
        for funnel, part in served:
            outer = () if funnel is None else (funnel,)
            range_label = part.get("time_range") or ""
            for path, dimension, value in numeric_leaves(part, (), outer):
                name = ".".join(path)
                yield section, name, join_dimension(dimension), value, unit_of(path), range_label


def numeric_leaves(value: Any, path: tuple[str, ...], dimension: tuple[str, ...]
                   ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], int | float]]:
    """Every number under ``value`` with its field path and its dimension (module docstring)."""
    if isinstance(value, bool | str) or value is None:
        return
    if isinstance(value, int | float):
        yield path, dimension, value
    elif isinstance(value, Mapping) and path and path[-1] in KEYED_MAPPINGS:
        for key, item in value.items():  # an item is a number or a record (a source's summary)
            fields = item.items() if isinstance(item, Mapping) else [(None, item)]
            for field, leaf in fields:
                yield from numeric_leaves(leaf, path if field is None else (*path, field), (*dimension, key))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from numeric_leaves(item, (*path, key), dimension)
    elif path and path[-1].endswith(INTERVAL_SUFFIX) and len(value) == 2:
        for bound, item in zip(("low", "high"), value):
            yield from numeric_leaves(item, (*path, bound), dimension)
    else:
        for position, item in enumerate(value):
            label, item = _identified(path[-1] if path else "", position, item)
            yield from numeric_leaves(item, path, (*dimension, label))


def _identified(list_name: str, position: int, item: Any) -> tuple[str, Any]:
    """A list item's label and what remains of it once its identifying field is taken out; a
    time-series point's ``value`` stands for the point itself."""
    if not isinstance(item, Mapping):
        return str(position), item
    key = ITEM_KEYS.get(list_name, "timestamp")
    if key not in item:
        return str(position), item
    rest = {field: value for field, value in item.items() if field != key}
    return str(item[key]), rest[SERIES_VALUE] if rest.keys() == {SERIES_VALUE} else rest


def unit_of(path: tuple[str, ...]) -> str:
    """The unit of the number at ``path`` (module docstring); an interval bound takes its field's."""
    field = path[-1]
    if field in ("low", "high") and len(path) > 1 and path[-2].endswith(INTERVAL_SUFFIX):
        field = path[-2][:-len(INTERVAL_SUFFIX)]
    return next((unit for pattern, unit in UNIT_RULES if pattern.fullmatch(field)), DEFAULT_UNIT)


def join_dimension(parts: tuple[str, ...]) -> str:
    return "|".join(part.replace("\\", "\\\\").replace("|", "\\|") for part in parts)
