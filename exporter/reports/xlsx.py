"""The dashboard as a workbook: one sheet per section, the tidy rows pivoted (docs/reports.md).

Each sheet has a line per dimension (split into one column per part, a timestamp written as a
date) and a column per figure name; the first row names the columns, the second gives their units,
and the numbers are numeric cells, formatted by unit (fractions as percentages, counts with
thousands separators) without changing their value. A section that could not be served has a
sheet saying why. Imported only through :mod:`exporter.reports.render` (XlsxWriter is an extra).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import xlsxwriter

from .figures import Row, Table, error_message, figures_by_section, is_timestamp, parse_instant, pivot, sections

WHOLE_SECTION = "(section)"  # the line of figures about the whole section (no dimension)
NUMBER_FORMATS = {"ratio": "0.0%", "percent": "0.0", "probability": "0.0000", "users": "#,##0", "count": "#,##0",
                  "seconds": "#,##0.0", "days": "0.0", "stars": "0.00"}
DATE_FORMAT = "yyyy-mm-dd hh:mm"
MAX_SHEET_NAME = 31  # Excel's limit
FORBIDDEN_IN_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
MAX_COLUMN_WIDTH = 40


def render(dashboard: Mapping[str, Any], rows: Iterable[Row]) -> bytes:
    """The workbook's bytes; the same dashboard always gives the same bytes."""
    output = io.BytesIO()
    # Every cell is written with its type, so no string is ever taken for a formula, number or URL.
    workbook = xlsxwriter.Workbook(output, {"in_memory": True, "remove_timezone": True})
    generated = datetime.fromisoformat(dashboard["generated_at"])
    workbook.set_properties({
        "title": f"Analytics dashboard, {dashboard['time_range']}", "created": generated.replace(tzinfo=None),
        "comments": f"time range {dashboard['time_range']}, generated at {dashboard['generated_at']}"})
    styles = _Styles(workbook)
    by_section = figures_by_section(rows)
    for section in sections(dashboard):
        sheet = workbook.add_worksheet(sheet_name(section))
        problem = error_message(dashboard[section])
        if problem is not None:
            sheet.write_string(0, 0, f"This section could not be served: {problem}")
        else:
            _write_table(sheet, pivot(by_section.get(section, [])), styles)
    workbook.close()
    return output.getvalue()


class _Styles:
    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.header = workbook.add_format({"bold": True, "bottom": 1})
        self.unit = workbook.add_format({"italic": True, "font_color": "#666666"})
        self.date = workbook.add_format({"num_format": DATE_FORMAT})
        self.numbers = {unit: workbook.add_format({"num_format": pattern}) for unit, pattern in NUMBER_FORMATS.items()}


def _write_table(sheet: Any, table: Table, styles: _Styles) -> None:
    depth = max(table.depth, 1)
    labels = ["dimension"] + [f"dimension {level + 1}" for level in range(1, depth)]
    for column, text in enumerate(labels + [c.name for c in table.columns]):
        sheet.write_string(0, column, text, styles.header)
    sheet.write_string(1, 0, "unit", styles.unit)
    for column, spec in enumerate(table.columns, start=depth):
        sheet.write_string(1, column, spec.unit, styles.unit)
    widths = [len(text) for text in labels + [c.name for c in table.columns]]
    for row, (dimension, values) in enumerate(table.lines.items(), start=2):
        for column, part in enumerate(dimension or (WHOLE_SECTION,)):
            if is_timestamp(part):
                sheet.write_datetime(row, column, parse_instant(part), styles.date)
                widths[column] = max(widths[column], len(DATE_FORMAT))
            else:
                sheet.write_string(row, column, part)
                widths[column] = max(widths[column], len(part))
        for column, spec in enumerate(table.columns, start=depth):
            if spec.name in values:
                sheet.write_number(row, column, values[spec.name], styles.numbers.get(spec.unit))
    for column, width in enumerate(widths):
        sheet.set_column(column, column, min(width + 2, MAX_COLUMN_WIDTH))
    sheet.freeze_panes(2, depth)
    if table.lines:  # from the units row, so that sorting keeps both header rows in place
        sheet.autofilter(1, 0, len(table.lines) + 1, depth + len(table.columns) - 1)


def sheet_name(section: str) -> str:
    return FORBIDDEN_IN_SHEET_NAME.sub("_", section)[:MAX_SHEET_NAME]
