"""The report email's body: the headline numbers and their change, anomalies, experiment recommendations.

Written twice from the same facts, as HTML (inline styles only: mail clients drop style sheets)
and as plain text (the alternative part, for clients that show no HTML). Every value from the
data is escaped in the HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from .figures import Row
from .formatting import format_value, label
from .highlights import Anomaly, Headline, Recommendation, anomalies, headlines, recommendations, title, unavailable

MAX_ANOMALIES = 10
CELL = "padding:3px 8px;border-bottom:1px solid #ddd;text-align:left"
NUMBER = "padding:3px 8px;border-bottom:1px solid #ddd;text-align:right"
HEAD = "padding:3px 8px;border-bottom:2px solid #333;text-align:left"


@dataclass(frozen=True)
class Summary:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Facts:
    heading: str
    period: str
    headlines: list[Headline]
    compared: bool
    anomalies: list[Anomaly] | None
    recommendations: list[Recommendation]
    unavailable: list[tuple[str, str]]
    attachments: Sequence[str]


def summarize(report: str, dashboard: Mapping[str, Any], rows: Iterable[Row],
              previous: tuple[Mapping[str, Any], Iterable[Row]] | None = None,
              attachments: Sequence[str] = ()) -> Summary:
    """The summary of report ``report`` over ``dashboard`` (with its tidy rows), against
    ``previous`` (the previous period's dashboard and rows) when given; ``attachments`` are the
    attached files' names, listed at the end."""
    generated = datetime.fromisoformat(dashboard["generated_at"])
    period = f"the {dashboard['time_range']} to {generated:%Y-%m-%d %H:%M} UTC"
    facts = _Facts(
        heading=f"Analytics report: {report}", period=period, headlines=headlines(dashboard, rows, previous),
        compared=previous is not None, anomalies=anomalies(dashboard), recommendations=recommendations(dashboard),
        unavailable=unavailable(dashboard), attachments=attachments)
    subject = f"Analytics report {report}: {dashboard['time_range']} to {generated:%Y-%m-%d}"
    return Summary(subject, _text(facts), _html(facts))


def _change_text(item: Headline, compared: bool) -> str:
    if item.previous is None:
        return "no previous value" if compared else ""
    return f"{item.change} (was {item.previous_value})" if item.change else f"was {item.previous_value}"


def _anomaly_text(item: Anomaly) -> str:
    when = item.timestamp[:10]
    return (f"{item.series} on {when}: {format_value(item.value, 'number')} ({item.direction}; expected "
            f"{format_value(item.expected, 'number')}, {format_value(item.lower, 'number')} to "
            f"{format_value(item.upper, 'number')})")


def _text(facts: _Facts) -> str:
    lines = [facts.heading, f"Covering {facts.period}.", "", "Headline numbers"]
    if not facts.compared:
        lines.append("(no previous period to compare with)")
    for item in facts.headlines:
        change = _change_text(item, facts.compared)
        lines.append(f"- {title(item.part)}, {label(item.figure.name)}: {item.value}"
                     + (f", {change}" if change else ""))
    if facts.anomalies is not None:
        lines += ["", "Anomalies"]
        lines += [f"- {_anomaly_text(item)}" for item in facts.anomalies[:MAX_ANOMALIES]] or ["- none flagged"]
    if facts.recommendations:
        lines += ["", "Experiments"]
        lines += [f"- {item.experiment} ({item.status}): {label(item.recommendation)}. {item.text}"
                  for item in facts.recommendations]
    if facts.unavailable:
        lines += ["", "Not available"] + [f"- {name}: {reason}" for name, reason in facts.unavailable]
    if facts.attachments:
        lines += ["", f"Attached: {', '.join(facts.attachments)}"]
    return "\n".join(lines) + "\n"


def _html(facts: _Facts) -> str:
    parts = [f"<h2 style=\"font-family:sans-serif\">{escape(facts.heading)}</h2>",
             f"<p>Covering {escape(facts.period)}.</p>", "<h3>Headline numbers</h3>"]
    if not facts.compared:
        parts.append("<p><em>No previous period to compare with.</em></p>")
    header = ["Part", "Figure", "Value"] + (["Previous", "Change"] if facts.compared else [])
    lines = []
    for item in facts.headlines:
        cells = [(title(item.part), CELL), (label(item.figure.name), CELL), (item.value, NUMBER)]
        if facts.compared:
            cells += [(item.previous_value or "–", NUMBER), (item.change or "–", NUMBER)]
        lines.append(cells)
    parts.append(_table(header, lines))
    if facts.anomalies is not None:
        parts.append("<h3>Anomalies</h3>")
        shown = facts.anomalies[:MAX_ANOMALIES]
        parts.append(_list([_anomaly_text(item) for item in shown]) if shown else "<p>None flagged.</p>")
    if facts.recommendations:
        parts.append("<h3>Experiments</h3>")
        parts.append(_table(["Experiment", "Status", "Recommendation", "Why"], [
            [(item.experiment, CELL), (item.status, CELL), (label(item.recommendation), CELL), (item.text, CELL)]
            for item in facts.recommendations]))
    if facts.unavailable:
        parts.append("<h3>Not available</h3>")
        parts.append(_list([f"{name}: {reason}" for name, reason in facts.unavailable]))
    if facts.attachments:
        parts.append(f"<p>Attached: {escape(', '.join(facts.attachments))}</p>")
    body = "\n".join(parts)
    return f"<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif;font-size:14px\">\n{body}\n</body></html>\n"


def _table(header: list[str], lines: list[list[tuple[str, str]]]) -> str:
    head = "".join(f"<th style=\"{HEAD}\">{escape(text)}</th>" for text in header)
    body = "".join("<tr>" + "".join(f"<td style=\"{style}\">{escape(text)}</td>" for text, style in cells) + "</tr>"
                   for cells in lines)
    return f"<table style=\"border-collapse:collapse\"><tr>{head}</tr>{body}</table>"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
