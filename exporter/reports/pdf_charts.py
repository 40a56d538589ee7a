"""The report's charts, as reportlab vector drawings: lines over time, bars, intervals around an estimate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Circle, Drawing, Line, String
from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth

from .formatting import format_number

PALETTE = tuple(colors.HexColor(code) for code in (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"))
AXIS_FONT_SIZE = 7
LABEL_CHARACTERS = 22  # a category label longer than this is cut with an ellipsis
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[datetime, float]]  # in time order


def tick(value: float, unit: str) -> str:
    """An axis label: shorter than a figure in a table."""
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "percent":
        return f"{value:.0f}%"
    return format_number(round(value, 6))


def line_chart(series: Sequence[Series], unit: str, width: float, font: str, height: float = 150) -> Drawing:
    """Each series as a line over time (x in days), with a legend when there are several."""
    legend_height = 14 * ((len(series) + 2) // 3) if len(series) > 1 else 0
    drawing = Drawing(width, height + legend_height)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 45, legend_height + 20, width - 60, height - 30
    plot.data = [[(moment.timestamp() / DAY_SECONDS, value) for moment, value in line.points] for line in series]
    values = [value for line in series for _, value in line.points]
    plot.yValueAxis.valueMin = min(0.0, *values)
    if max(values) == plot.yValueAxis.valueMin:  # a flat line at zero still needs a scale
        plot.yValueAxis.valueMax = 1.0
    plot.yValueAxis.labelTextFormat = lambda value: tick(value, unit)
    plot.xValueAxis.labelTextFormat = lambda day: f"{datetime.fromtimestamp(day * DAY_SECONDS, UTC):%d %b}"
    plot.xValueAxis.maximumTicks = 8
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName, axis.labels.fontSize = font, AXIS_FONT_SIZE
    for index in range(len(series)):
        plot.lines[index].strokeColor = PALETTE[index % len(PALETTE)]
        plot.lines[index].strokeWidth = 1.2
    drawing.add(plot)
    if len(series) > 1:
        legend = Legend()
        legend.x, legend.y, legend.alignment = 45, legend_height - 2, "right"
        legend.columnMaximum, legend.fontName, legend.fontSize = (len(series) + 2) // 3, font, AXIS_FONT_SIZE
        legend.dx = legend.dy = 6
        legend.deltax = (width - 60) / 3
        legend.colorNamePairs = [(PALETTE[index % len(PALETTE)], shorten(line.name))
                                 for index, line in enumerate(series)]
        drawing.add(legend)
    return drawing


def bar_chart(labels: Sequence[str], values: Sequence[float], unit: str, width: float, font: str,
              height: float = 150) -> Drawing:
    """One bar per label, its value written above it."""
    slanted = len(labels) > 6 or any(len(text) > 10 for text in labels)
    label_room = 55 if slanted else 15
    drawing = Drawing(width, height + label_room)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 45, label_room + 5, width - 60, height - 20
    chart.data = [list(values)]
    chart.valueAxis.valueMin = min(0.0, *values)
    chart.valueAxis.labelTextFormat = lambda value: tick(value, unit)
    chart.categoryAxis.categoryNames = [shorten(text) for text in labels]
    chart.bars[0].fillColor = PALETTE[0]
    chart.barLabelFormat = lambda value: tick(value, unit)
    chart.barLabels.fontName, chart.barLabels.fontSize, chart.barLabels.nudge = font, AXIS_FONT_SIZE - 1, 6
    for axis_labels in (chart.valueAxis.labels, chart.categoryAxis.labels):
        axis_labels.fontName, axis_labels.fontSize = font, AXIS_FONT_SIZE
    if slanted:
        chart.categoryAxis.labels.angle, chart.categoryAxis.labels.boxAnchor = 30, "ne"
    drawing.add(chart)
    return drawing


def interval_chart(labels: Sequence[str], estimates: Sequence[float], intervals: Sequence[tuple[float, float]],
                   unit: str, width: float, font: str) -> Drawing:
    """A forest plot: per label, the estimate as a dot on its interval, with a line at zero."""
    row_height, label_width, axis_room = 14, min(220.0, width * 0.4), 22
    drawing = Drawing(width, row_height * len(labels) + axis_room)
    low = min(0.0, *(bounds[0] for bounds in intervals))
    high = max(0.0, *(bounds[1] for bounds in intervals))
    span = (high - low) or 1.0
    left, right = label_width + 10, width - 10

    def x(value: float) -> float:
        return left + (value - low) / span * (right - left)

    drawing.add(Line(x(0), axis_room - 4, x(0), drawing.height, strokeColor=colors.grey, strokeDashArray=(2, 2)))
    for row, (text, estimate, (lower, upper)) in enumerate(zip(labels, estimates, intervals)):
        y = drawing.height - row_height * (row + 0.5)
        color = PALETTE[0] if lower > 0 else PALETTE[3] if upper < 0 else colors.grey
        drawing.add(String(label_width, y - 2.5, fit(text, label_width, font), fontName=font,
                           fontSize=AXIS_FONT_SIZE, textAnchor="end"))
        drawing.add(Line(x(lower), y, x(upper), y, strokeColor=color, strokeWidth=1.5))
        drawing.add(Circle(x(estimate), y, 2.5, fillColor=color, strokeColor=color))
    for value in (low, 0.0, high):
        drawing.add(String(x(value), 6, tick(value, unit), fontName=font, fontSize=AXIS_FONT_SIZE, textAnchor="middle"))
    return drawing


def shorten(text: str, limit: int = LABEL_CHARACTERS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def fit(text: str, width: float, font: str) -> str:
    """``text`` cut with an ellipsis to fit ``width`` points at the axis font size."""
    while len(text) > 1 and stringWidth(text, font, AXIS_FONT_SIZE) > width:
        text = text[:-2] + "…"
    return text
