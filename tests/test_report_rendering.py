"""The report renderers over a real demo dashboard: xlsx (read back with openpyxl), pdf (read back
with pypdf), the email summary and the message, and the optional extra loaded only on demand."""

from __future__ import annotations

import asyncio
import copy
import io
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from api.dashboard import build_dashboard
from api.export import dashboard_csv, dashboard_rows, join_dimension
from api.responses import Responses
from exporter.cli import demo_overrides
from exporter.config import Config, load_config
from exporter.reports.config import ReportConfig
from exporter.reports.figures import parts, split_dimension
from exporter.reports.formatting import format_change, format_duration, format_value, label
from exporter.reports.message import Attachment, report_email
from exporter.reports.render import CONTENT_TYPES, INSTALL_HINT, ReportsExtraMissing, render
from exporter.reports.summary import summarize
from exporter.service import AnalyticsService
from exporter.timeranges import TimeRange

GENERATED_AT = "2026-12-03T14:05:39.411Z"
HOSTILE = "=HYPERLINK(\"http://x\")|<b>&amp;</b> \\ ünïcødé"
# The sections' declarations, which give the tidy rows their units (no source is reached).
AREAS = AnalyticsService(Config()).areas


def rows_of(dashboard: dict) -> list:
    return list(dashboard_rows(AREAS, dashboard))


@pytest.fixture(scope="module")
def demo(demo_upstreams):
    """The demo's 30-day dashboard, as ``/api/v1/dashboard`` serves it, with its tidy rows."""
    async def build():
        service = AnalyticsService(load_config(environ={}, overrides=demo_overrides(demo_upstreams)))
        try:
            return await build_dashboard(service, Responses(service.health, service.clock), TimeRange.D30)
        finally:
            await service.close()

    dashboard = asyncio.run(build())
    return dashboard, rows_of(dashboard)


def small_dashboard() -> dict:
    """A dashboard with a hostile page name, a section that could not be served and one funnel."""
    section = {"time_range": "7d", "generated_at": GENERATED_AT, "sources": {}}
    return {
        "time_range": "7d", "generated_at": GENERATED_AT, "sources": {},
        "usage_trends": section | {"active_users": 12, "bounce_rate": 41.5,
                                   "top_pages": [{"name": HOSTILE, "visitors": 3, "pageviews": 5}]},
        "feedback": {"error": {"code": "source_down", "message": "feedback: connection refused"}},
        "funnels": {"signup": section | {"overall_conversion_rate": 0.25,
                                         "steps": [{"step_name": "start", "users_entered": 8}]}},
    }


# -- the tidy rows, as the renderers read them -------------------------------------------------

@given(st.lists(st.text(alphabet="ab|\\é", max_size=5), min_size=1, max_size=4))
def test_a_dimension_splits_back_into_the_parts_the_export_joined(dimension_parts):
    joined = join_dimension(tuple(dimension_parts))
    assert split_dimension(joined) == (tuple(dimension_parts) if joined else ())


def test_a_keyed_section_gives_a_part_per_entry_with_its_name_taken_off_the_dimension():
    dashboard = small_dashboard()
    found = parts(dashboard, rows_of(dashboard))
    assert [(part.section, part.key) for part in found] == [("usage_trends", None), ("feedback", None),
                                                             ("funnels", "signup")]
    assert found[1].error == "feedback: connection refused"
    funnel = found[2]
    assert funnel.headline(["overall_conversion_rate"])[0].value == 0.25
    (steps,) = funnel.tables()
    assert steps.lines == {("start",): {"steps.users_entered": 8}}


@pytest.mark.parametrize(("value", "unit", "text"), [
    (0.3512, "ratio", "35.1%"), (41.46, "percent", "41.5%"), (0.00084, "probability", "0.00084"),
    (0.0412, "probability", "0.041"), (209, "seconds", "3 min 29 s"), (12.5, "seconds", "12.5 s"),
    (3 * 86_400 + 5 * 3_600 + 59, "seconds", "3 d 5 h"), (3.9159, "stars", "3.92 / 5"), (12345, "users", "12,345"),
    (7.5, "days", "7.50 d"), (-2.52, "score", "-2.52"),
])
def test_values_read_in_their_unit(value, unit, text):
    assert format_value(value, unit) == text


def test_changes_are_points_between_shares_and_relative_otherwise():
    assert format_change(0.30, 0.25, "ratio") == "+5.0 pp"
    assert format_change(40.0, 42.5, "percent") == "-2.5 pp"
    assert format_change(150, 100, "users") == "+50.0%"
    assert format_change(5, 0, "count") is None
    assert format_duration(3_600) == "1 h 0 min"
    assert label("nps_5star.score") == "NPS 5-star score"
    assert label("experiments.variants.p_value") == "Experiments variants p-value"


# -- xlsx --------------------------------------------------------------------------------------

def read_workbook(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def test_every_number_is_a_typed_cell_of_its_sections_sheet_under_its_name_and_unit(demo):
    dashboard, rows = demo
    workbook = read_workbook(render("xlsx", dashboard, rows))
    assert workbook.sheetnames == [key for key in dashboard if key not in ("time_range", "generated_at", "sources")]
    for sheet in workbook:
        header = [cell.value for cell in sheet[1]]
        depth = sum(1 for text in header if text.startswith("dimension"))
        units = {name: unit for name, unit in zip(header[depth:], [cell.value for cell in sheet[2]][depth:])}
        lines = {tuple(_dimension_text(cell.value) for cell in line[:depth] if cell.value is not None): line
                 for line in sheet.iter_rows(min_row=3)}
        expected = [row for row in rows if row[0] == sheet.title]
        assert expected
        for _, name, dimension, value, unit, _ in expected:
            cell = lines[split_dimension(dimension) or ("(section)",)][header.index(name)]
            assert (cell.data_type, cell.value) == ("n", pytest.approx(value)), (sheet.title, name, dimension)
            assert units[name] == unit
            if unit == "ratio":
                assert cell.number_format == "0.0%"  # shown as a percentage, stored as the fraction


def _dimension_text(value) -> str:
    """A dimension cell as the export writes it: a date cell back to ``...Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value


def test_a_section_that_could_not_be_served_has_a_sheet_saying_why_and_strings_stay_strings():
    dashboard = small_dashboard()
    workbook = read_workbook(render("xlsx", dashboard, rows_of(dashboard)))
    assert workbook["feedback"]["A1"].value == "This section could not be served: feedback: connection refused"
    page = next(line for line in workbook["usage_trends"].iter_rows(min_row=3) if line[0].value == HOSTILE)
    assert page[0].data_type == "s"  # a formula-like label is text, never a formula
    assert workbook["funnels"]["A3"].value == "signup"


def test_the_same_dashboard_gives_the_same_workbook(demo):
    assert render("xlsx", *demo) == render("xlsx", *demo)


# -- pdf ---------------------------------------------------------------------------------------

def pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


@pytest.mark.slow  # renders a whole report from the demo
def test_the_pdf_has_each_sections_headline_figures_tables_and_recommendations(demo):
    dashboard, rows = demo
    pages, text = pdf_text(render("pdf", dashboard, rows))
    assert pages >= 7  # the cover, then a page or more per section
    usage = dashboard["usage_trends"]
    for title in ("Analytics report", "At a glance", "Usage trends", "Experiment results", "Feature adoption",
                  "Feedback", "User segments", "Funnels", "Recommendations", "Top pages", "Steps"):
        assert title in text
    assert format_value(usage["active_users"], "users") in text
    assert format_value(usage["bounce_rate"], "percent") in text
    assert usage["top_pages"][0]["name"] in text
    running = [item for item in dashboard["experiment_results"]["experiments"] if item["status"] == "running"]
    assert running and all(item["experiment_name"] in text for item in running)
    assert all(" ".join(label(name).split()) in text for name in dashboard["funnels"])


def test_the_pdf_shows_data_as_text_and_says_which_sections_are_missing():
    dashboard = small_dashboard()
    _, text = pdf_text(render("pdf", dashboard, rows_of(dashboard)))
    assert "Not available: feedback: connection refused" in text
    assert "<b>&amp;</b>" in text  # markup in the data is printed, not interpreted
    assert "ünïcødé" in text


# -- the optional extra ------------------------------------------------------------------------

def test_no_report_library_is_imported_until_a_report_is_rendered():
    probe = ("import sys, exporter.reports.render, exporter.reports.summary, exporter.reports.message, "
             "exporter.reports.smtp, exporter.reports.config, exporter.reports.schedule; "
             "print(sorted(name for name in ('reportlab', 'xlsxwriter') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("form", "package"), [("pdf", "reportlab"), ("xlsx", "xlsxwriter")])
def test_a_missing_report_library_is_an_error_naming_the_extra(monkeypatch, form, package):
    for module in [name for name in sys.modules
                   if name == package or name.startswith((f"{package}.", f"exporter.reports.{form}"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without the extra gives
    dashboard = small_dashboard()
    with pytest.raises(ReportsExtraMissing) as raised:
        render(form, dashboard, rows_of(dashboard))
    assert INSTALL_HINT in str(raised.value) and package in str(raised.value)


# -- the email ---------------------------------------------------------------------------------

def earlier(dashboard: dict) -> dict:
    """The same dashboard with other headline numbers, standing for the previous period."""
    previous = copy.deepcopy(dashboard)
    previous["usage_trends"]["active_users"] = dashboard["usage_trends"]["active_users"] // 2
    previous["usage_trends"]["bounce_rate"] = dashboard["usage_trends"]["bounce_rate"] + 2.5
    return previous


def test_the_summary_gives_each_headline_number_and_its_change_against_the_previous_period(demo):
    dashboard, rows = demo
    previous = earlier(dashboard)
    summary = summarize("weekly", dashboard, rows, (previous, rows_of(previous)))
    usage = dashboard["usage_trends"]
    active = f"Usage trends, Active users: {usage['active_users']}"
    relative = (usage["active_users"] - usage["active_users"] // 2) / (usage["active_users"] // 2)
    assert f"{active}, {relative:+.1%} (was {usage['active_users'] // 2})" in summary.text
    assert f"Bounce rate: {usage['bounce_rate']:.1f}%, -2.5 pp" in summary.text
    newest = dashboard["anomalies"]["anomalies"][0]  # the demo plants anomalies in its daily series
    assert f"Anomalies\n- {newest['series']} on {newest['timestamp'][:10]}: " in summary.text
    assert summary.subject.startswith("Analytics report weekly: 30d to ")
    for value in (f"{relative:+.1%}", "-2.5 pp", "Previous", "Change"):
        assert value in summary.html


def test_the_summary_lists_recommendations_decisions_first_and_anomalies_when_there_are(demo):
    dashboard, rows = demo
    flagged = copy.deepcopy(dashboard)
    flagged["anomalies"] = {"time_range": "30d", "generated_at": GENERATED_AT, "sources": {}, "anomalies": [
        {"series": "active_users", "timestamp": "2026-12-01T00:00:00Z", "value": 12, "expected": 80.5, "lower": 60.2,
         "upper": 100.9, "score": -4.1, "direction": "down"}], "insufficient_history": []}
    shown = next(item for item in flagged["experiment_results"]["experiments"] if item["status"] != "draft")
    shown["experiment_name"] = "<script>alert(1)</script>"
    summary = summarize("daily", flagged, rows)
    assert "No previous period to compare with." in summary.html
    assert "- active_users on 2026-12-01: 12 (down; expected 80.50, 60.20 to 101)" in summary.text
    experiments = summary.text.split("\nExperiments\n", 1)[1].split("\n\n", 1)[0].splitlines()
    order = [line.split("): ", 1)[1].split(".", 1)[0] for line in experiments]
    assert order.index("Ship") < order.index("Roll back") < order.index("Keep running")
    assert "<script>" not in summary.html and "&lt;script&gt;" in summary.html
    drafts = [item["experiment_name"] for item in flagged["experiment_results"]["experiments"]
              if item["status"] == "draft"]
    assert all(name not in summary.text for name in drafts)


@pytest.mark.slow  # renders a whole report from the demo
def test_the_report_email_has_the_summary_as_text_and_html_and_the_formats_attached(demo):
    dashboard, _ = demo
    report = ReportConfig(name="weekly", schedule="weekly MON 08:00", recipients=("team@example.com",),
                          formats=("pdf", "xlsx", "csv"))

    def export(current, form):
        if form == "csv":
            return Attachment("dashboard.csv", "text/csv; charset=utf-8", dashboard_csv(AREAS, current).encode())
        return Attachment(f"dashboard.{form}", CONTENT_TYPES[form], render(form, current, rows_of(current)))

    message = report_email(report, "Analytics <analytics@example.com>", dashboard, earlier(dashboard), rows_of,
                           export, datetime(2026, 12, 7, 8, 0, tzinfo=UTC))
    parsed = message_from_bytes(message.as_bytes(), policy=default_policy)
    assert (parsed["To"], parsed["From"]) == ("team@example.com", "Analytics <analytics@example.com>")
    assert parsed["Message-ID"].endswith("@example.com>") and parsed["Date"] == "Mon, 07 Dec 2026 08:00:00 +0000"
    assert "Active users" in parsed.get_body(("plain",)).get_content()
    assert "<table" in parsed.get_body(("html",)).get_content()
    attached = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert list(attached) == ["dashboard.pdf", "dashboard.xlsx", "dashboard.csv"]
    assert attached["dashboard.pdf"].get_content_type() == "application/pdf"
    assert attached["dashboard.pdf"].get_content().startswith(b"%PDF")
    assert attached["dashboard.csv"].get_content().replace("\r\n", "\n") == dashboard_csv(AREAS, dashboard).replace(
        "\r\n", "\n")
    assert read_workbook(attached["dashboard.xlsx"].get_content()).sheetnames[0] == "usage_trends"
    assert "Attached: dashboard.pdf, dashboard.xlsx, dashboard.csv" in parsed.get_body(("plain",)).get_content()
