"""The dashboard as a readable PDF report (reportlab): headline figures, charts and tables per section.

The cover page gives the time range, every part's headline figures and the sources' status.
Then each section starts a page (each funnel of the ``funnels`` section under its own heading):
its headline figures, its charts (every series over time as lines, plus the section's chart of
choice below), and each of its lists as a table with a units row, wide tables split into several
of the same lines. Experiments also list their recommendations. Imported only through
:mod:`exporter.reports.render` (reportlab is an extra).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as PdfTable

from .figures import Part, Row, Table, is_timestamp, parse_instant, parts
from .formatting import format_value, label
from .highlights import EXPERIMENTS, experiment_names, headlines, part_headline, recommendations, title, unavailable
from .pdf_charts import Series, bar_chart, interval_chart, line_chart
from .pdf_fonts import Fonts, report_fonts

MARGIN = 40.0
WIDTH = A4[0] - 2 * MARGIN
TABLE_FONT_SIZE = 7.5
CELL_PADDING = 8.0
MIN_COLUMN_WIDTH = 42.0
MAX_LABEL_WIDTH = 170.0
HEADLINE_COLUMNS = 4
GRID = colors.HexColor("#cccccc")
SHADE = colors.HexColor("#f2f4f7")
MUTED = colors.HexColor("#666666")
# Besides a line chart per series over time, a section's chart of choice: a bar per item of the
# named figure, or its interval (the same name with ``_ci.low`` / ``_ci.high``) per item.
BAR_CHARTS = {"feedback": "rating_distribution", "user_segments": "segments.user_count",
              "funnels": "steps.users_entered"}
INTERVAL_CHARTS = {EXPERIMENTS: "experiments.variants.relative_lift"}


@dataclass(frozen=True)
class Styles:
    fonts: Fonts
    title: ParagraphStyle
    heading: ParagraphStyle
    subheading: ParagraphStyle
    caption: ParagraphStyle
    body: ParagraphStyle
    muted: ParagraphStyle
    cell: ParagraphStyle
    header: ParagraphStyle
    figure: ParagraphStyle


def render(dashboard: Mapping[str, Any], rows: Iterable[Row]) -> bytes:
    """The report's bytes; the same dashboard always gives the same bytes."""
    styles = _styles(report_fonts())
    rows = list(rows)
    names = experiment_names(dashboard)
    story = _cover(dashboard, rows, styles)
    section = None
    for part in parts(dashboard, rows):
        if part.section != section:
            section = part.section
            story += [PageBreak(), Paragraph(escape(label(section)), styles.title)]
        story += _part(part, dashboard, names, styles)
    output = io.BytesIO()
    document = SimpleDocTemplate(
        output, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
        title=f"Analytics report, {dashboard['time_range']}", author="analytics-dashboard",
        subject=f"generated at {dashboard['generated_at']}", invariant=True)
    footer = _footer(dashboard, styles.fonts)
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return output.getvalue()


def _styles(fonts: Fonts) -> Styles:
    def style(name: str, size: float, **extra: Any) -> ParagraphStyle:
        return ParagraphStyle(name, **({"fontName": fonts.regular, "fontSize": size, "leading": size * 1.25} | extra))

    return Styles(
        fonts=fonts,
        title=style("title", 18, spaceAfter=8, fontName=fonts.bold),
        heading=style("heading", 13, spaceBefore=10, spaceAfter=6, fontName=fonts.bold),
        subheading=style("subheading", 10, spaceBefore=8, spaceAfter=4, fontName=fonts.bold),
        caption=style("caption", 8.5, spaceBefore=6, spaceAfter=2, fontName=fonts.bold),
        body=style("body", 9, spaceAfter=4),
        muted=style("muted", 7, textColor=MUTED),
        cell=style("cell", TABLE_FONT_SIZE),
        header=style("header", TABLE_FONT_SIZE, fontName=fonts.bold),
        figure=style("figure", 14, fontName=fonts.bold),
    )


def _cover(dashboard: Mapping[str, Any], rows: list[Row], styles: Styles) -> list[Flowable]:
    story: list[Flowable] = [
        Paragraph("Analytics report", styles.title),
        Paragraph(escape(f"Time range {dashboard['time_range']}, generated {_instant(dashboard['generated_at'])}"),
                  styles.body)]
    glance = [[Paragraph(escape(title(item.part)), styles.cell),
               Paragraph(escape(label(item.figure.name)), styles.cell), item.value]
              for item in headlines(dashboard, rows)]
    if glance:
        story += [Paragraph("At a glance", styles.heading),
                  _grid([["Part", "Figure", "Value"], *glance], [150, 220, WIDTH - 370], styles, header_rows=1,
                        numeric_from=2)]
    sources = [[escape(name), str(state.get("status", "")), _instant(state.get("last_success")),
                Paragraph(escape(state.get("error") or ""), styles.cell)]
               for name, state in (dashboard.get("sources") or {}).items()]
    if sources:
        story += [Paragraph("Sources", styles.heading),
                  _grid([["Source", "Status", "Last success", "Error"], *sources], [90, 50, 110, WIDTH - 250], styles,
                        header_rows=1)]
    missing = unavailable(dashboard)
    if missing:
        story.append(Paragraph("Not available", styles.heading))
        story += [Paragraph(f"<b>{escape(name)}</b>: {escape(reason)}", styles.body) for name, reason in missing]
    return story


def _part(part: Part, dashboard: Mapping[str, Any], names: Mapping[str, str], styles: Styles) -> list[Flowable]:
    story: list[Flowable] = []
    if part.key is not None:
        story += [CondPageBreak(200), Paragraph(escape(label(part.key)), styles.heading)]
    if part.error:
        return story + [Paragraph(escape(f"Not available: {part.error}"), styles.body)]
    headline = part_headline(part)
    if headline:
        cells = [[Paragraph(escape(label(figure.name)), styles.muted),
                  Paragraph(escape(format_value(figure.value, figure.unit)), styles.figure)] for figure in headline]
        lines = [cells[start:start + HEADLINE_COLUMNS] for start in range(0, len(cells), HEADLINE_COLUMNS)]
        lines[-1] += [""] * (HEADLINE_COLUMNS - len(lines[-1]))
        story.append(PdfTable(lines, colWidths=[WIDTH / HEADLINE_COLUMNS] * HEADLINE_COLUMNS, hAlign="LEFT",
                              style=[("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 6)]))
    if part.section == EXPERIMENTS:
        story += _recommendations(dashboard, styles)
    tables = part.tables()
    story += _charts(part.section, tables, names, styles)
    for table in tables:
        if not table.is_series:
            story += _data_table(table, names, styles)
    if not (headline or tables):
        story.append(Paragraph("No figures for this range.", styles.body))
    return story


def _recommendations(dashboard: Mapping[str, Any], styles: Styles) -> list[Flowable]:
    found = recommendations(dashboard)
    if not found:
        return []
    lines = [[Paragraph(escape(item.experiment), styles.cell), item.status, Paragraph(
        f"<b>{escape(label(item.recommendation))}</b>", styles.cell), Paragraph(escape(item.text), styles.cell)]
        for item in found]
    return [Paragraph("Recommendations", styles.subheading),
            _grid([["Experiment", "Status", "Recommendation", "Why"], *lines], [110, 45, 80, WIDTH - 235], styles,
                  header_rows=1)]


def _charts(section: str, tables: list[Table], names: Mapping[str, str], styles: Styles) -> list[Flowable]:
    font, story = styles.fonts.regular, []
    for table in tables:
        if table.is_series:
            series = _series(table, names)
            chart = line_chart(series, table.columns[0].unit, WIDTH, font)
            story.append(_captioned(label(table.group), chart, styles))
    bars = BAR_CHARTS.get(section)
    for table in tables:
        column = next((column for column in table.columns if column.name == bars), None)
        if column is not None and not table.is_series:
            lines = [(dimension, values[bars]) for dimension, values in table.lines.items() if bars in values]
            chart = bar_chart([_dimension_text(dimension, names) for dimension, _ in lines],
                              [value for _, value in lines], column.unit, WIDTH, font)
            story.append(_captioned(label(bars.rsplit(".", 1)[-1]), chart, styles))
    interval = INTERVAL_CHARTS.get(section)
    bounds = (f"{interval}_ci.low", f"{interval}_ci.high")
    for table in tables:
        column = next((column for column in table.columns if column.name == interval), None)
        lines = [(dimension, values) for dimension, values in table.lines.items()
                 if interval in values and all(bound in values for bound in bounds)]
        if column is not None and lines:
            chart = interval_chart([_dimension_text(dimension, names) for dimension, _ in lines],
                                   [values[interval] for _, values in lines],
                                   [(values[bounds[0]], values[bounds[1]]) for _, values in lines],
                                   column.unit, WIDTH, font)
            field = interval.rsplit(".", 1)[-1]
            story.append(_captioned(f"{label(field)}: estimate and confidence interval", chart, styles))
    return story


def _series(table: Table, names: Mapping[str, str]) -> list[Series]:
    """A line per column, and per item when the series are an item's (a feature's weekly users)."""
    points: dict[str, list[tuple[datetime, float]]] = {}
    for dimension, values in table.lines.items():
        moment = parse_instant(dimension[-1])
        for column in table.columns:
            if column.name in values and moment is not None:
                own = [_dimension_text(dimension[:-1], names)] if dimension[:-1] else []
                wide = [table.column_label(column)] if len(table.columns) > 1 or not own else []
                points.setdefault(" · ".join(own + [label(name) for name in wide]), []).append(
                    (moment, values[column.name]))
    return [Series(name, sorted(line)) for name, line in points.items()]


def _data_table(table: Table, names: Mapping[str, str], styles: Styles) -> list[Flowable]:
    """The table, its columns split over as many tables as the page width needs (the caption names
    the list, so the label columns have no header)."""
    regular, bold = styles.fonts.regular, styles.fonts.bold
    label_texts = [[_part_text(dimension[level], names) for dimension in table.lines] for level in range(table.depth)]
    label_widths = [min(MAX_LABEL_WIDTH, max(stringWidth(text, regular, TABLE_FONT_SIZE) for text in texts)
                        + CELL_PADDING) for texts in label_texts]
    cells = {column.name: [format_value(values[column.name], column.unit) if column.name in values else "–"
                           for values in table.lines.values()] for column in table.columns}
    # Wide enough for every value and for the header's longest word: a header wraps between words only.
    widths = {column.name: CELL_PADDING + max(
        MIN_COLUMN_WIDTH - CELL_PADDING,
        *(stringWidth(text, regular, TABLE_FONT_SIZE) for text in [*cells[column.name], column.unit]),
        *(stringWidth(word, bold, TABLE_FONT_SIZE) for word in label(table.column_label(column)).split()))
        for column in table.columns}
    story: list[Flowable] = [Paragraph(escape(label(table.group)), styles.caption)]
    for chunk in _chunks([column.name for column in table.columns], widths, WIDTH - sum(label_widths)):
        columns = [column for column in table.columns if column.name in chunk]
        header = [""] * table.depth + [Paragraph(escape(label(table.column_label(column))), styles.header)
                                       for column in columns]
        units = [""] * table.depth + [Paragraph(escape(column.unit), styles.muted) for column in columns]
        body = [[Paragraph(escape(label_texts[level][line]), styles.cell) for level in range(table.depth)]
                + [cells[column.name][line] for column in columns] for line in range(len(table.lines))]
        story += [_grid([header, units, *body], label_widths + [widths[column.name] for column in columns], styles,
                        header_rows=2, numeric_from=table.depth), Spacer(1, 6)]
    return story


def _chunks(names: list[str], widths: Mapping[str, float], room: float) -> list[list[str]]:
    """``names`` in order, cut into runs whose widths add up to at most ``room`` (at least one each)."""
    chunks: list[list[str]] = [[]]
    used = 0.0
    for name in names:
        if chunks[-1] and used + widths[name] > room:
            chunks.append([])
            used = 0.0
        chunks[-1].append(name)
        used += widths[name]
    return chunks


def _grid(lines: list[list[Any]], widths: Sequence[float], styles: Styles, header_rows: int,
          numeric_from: int | None = None) -> PdfTable:
    """A table with the report's look: header rows bold and repeated on each page, shaded lines."""
    commands = [
        ("FONT", (0, 0), (-1, -1), styles.fonts.regular, TABLE_FONT_SIZE),
        ("FONT", (0, 0), (-1, header_rows - 1), styles.fonts.bold, TABLE_FONT_SIZE),
        ("LINEBELOW", (0, header_rows - 1), (-1, header_rows - 1), 0.5, colors.black),
        ("LINEBELOW", (0, header_rows), (-1, -1), 0.25, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    commands += [("BACKGROUND", (0, line), (-1, line), SHADE) for line in range(header_rows + 1, len(lines), 2)]
    if numeric_from is not None:
        commands.append(("ALIGN", (numeric_from, header_rows), (-1, -1), "RIGHT"))
    return PdfTable(lines, colWidths=list(widths), repeatRows=header_rows, hAlign="LEFT", style=TableStyle(commands))


def _captioned(caption: str, chart: Flowable, styles: Styles) -> Flowable:
    return KeepTogether([Paragraph(escape(caption), styles.caption), chart])


def _dimension_text(dimension: tuple[str, ...], names: Mapping[str, str]) -> str:
    return " · ".join(_part_text(part, names) for part in dimension)


def _part_text(part: str, names: Mapping[str, str]) -> str:
    """A dimension part as a reader knows it: an experiment by its name, a day as a date."""
    if is_timestamp(part):
        return _instant(part)
    return names.get(part, part)


def _instant(text: str | None) -> str:
    """``2026-12-03 14:05 UTC``, or the date alone at midnight; empty for None."""
    moment = parse_instant(text) if text else None
    if moment is None:
        return text or ""
    return f"{moment:%Y-%m-%d}" if (moment.hour, moment.minute, moment.second) == (0, 0, 0) \
        else f"{moment:%Y-%m-%d %H:%M} UTC"


def _footer(dashboard: Mapping[str, Any], fonts: Fonts) -> Any:
    text = f"Analytics report · {dashboard['time_range']} · generated {_instant(dashboard['generated_at'])}"

    def draw(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(fonts.regular, 7)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, MARGIN / 2, text)
        canvas.drawRightString(A4[0] - MARGIN, MARGIN / 2, f"page {document.page}")
        canvas.restoreState()

    return draw
