"""``GET /api/v1/export/{json,csv,xlsx,pdf}`` and ``analytics-dashboard export``."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import datetime

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from api.export import join_dimension
from devtools.processes import free_port
from exporter.cli import main
from exporter.config import ENVIRONMENT
from exporter.reports.render import INSTALL_HINT

HEADER = ["section", "name", "dimension", "value", "unit", "time_range"]  # docs/api.md#conventions
SECTIONS = {"usage_trends", "feature_adoption", "experiment_results", "feedback", "user_segments", "funnels",
            "retention", "lifecycle", "forecast", "anomalies"}
FILENAME = re.compile(
    r'^attachment; filename="analytics-dashboard-(?P<range>\w+)-(?P<stamp>\d{8}T\d{6}Z)\.(?P<ext>\w+)"$')


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    assert next(reader) == HEADER
    rows = [dict(zip(HEADER, row, strict=True)) for row in reader]
    assert rows
    return rows


def split_dimension(text: str) -> list[str]:
    """Reference parser of the documented escaping: ``|`` separates, ``\\`` escapes the next character."""
    parts, current, chars = [], "", iter(text)
    for char in chars:
        if char == "\\":
            current += next(chars)
        elif char == "|":
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def numbers_in(value, skip_keys=frozenset({"days_active"})) -> list[float]:
    """Every number in a JSON value except booleans and the keys that identify items."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for key, item in value.items() if key not in skip_keys for n in numbers_in(item)]
    return [n for item in value for n in numbers_in(item)]


def the_row(rows: list[dict], section: str, name: str, *dimension: str) -> dict:
    found = [r for r in rows if (r["section"], r["name"], split_dimension(r["dimension"])) ==
             (section, name, list(dimension) if dimension else [""])]
    assert len(found) == 1, (section, name, dimension, len(found))
    return found[0]


async def test_json_export_is_the_dashboard_for_the_same_range_as_a_download(make_demo_client):
    client, _ = await make_demo_client()
    response = await client.get("/api/v1/export/json?time_range=7d")
    assert response.status == 200 and response.content_type == "application/json"
    exported = json.loads(await response.text())
    dashboard = await (await client.get("/api/v1/dashboard?time_range=7d")).json()
    # Both are the same function over the same memoized snapshots; the service's clock stands still
    # here, so even generated_at and the sources' ages are equal.
    assert exported == dashboard
    assert set(exported) == {"time_range", "generated_at", "sources", *SECTIONS}
    assert not [key for key in SECTIONS - {"funnels"} if "error" in exported[key]]
    name = FILENAME.match(response.headers["Content-Disposition"])
    assert name and name["range"] == "7d" and name["ext"] == "json"
    generated = datetime.fromisoformat(exported["generated_at"])
    assert name["stamp"] == generated.strftime("%Y%m%dT%H%M%SZ") and generated.utcoffset().total_seconds() == 0
    default = await client.get("/api/v1/export/json")
    assert (await default.json())["time_range"] == "30d"
    assert FILENAME.match(default.headers["Content-Disposition"])["range"] == "30d"


async def test_csv_export_round_trips_with_every_number_of_the_dashboard(make_demo_client):
    client, _ = await make_demo_client()
    response = await client.get("/api/v1/export/csv?time_range=7d")
    assert response.status == 200 and response.content_type == "text/csv"
    assert FILENAME.match(response.headers["Content-Disposition"])["ext"] == "csv"
    rows = parse_csv(await response.text())
    dashboard = await (await client.get("/api/v1/dashboard?time_range=7d")).json()

    # Every numeric leaf of every section, exactly once, with its exact value.
    leaves = sorted(n for key in SECTIONS for n in numbers_in(dashboard[key]))
    assert sorted(float(row["value"]) for row in rows) == leaves
    assert {row["section"] for row in rows} == SECTIONS
    takes_none = {"experiment_results", "forecast"}
    assert {row["time_range"] for row in rows if row["section"] in takes_none} == {""}
    assert {row["time_range"] for row in rows if row["section"] not in takes_none} == {"7d"}
    assert len({(r["section"], r["name"], r["dimension"]) for r in rows}) == len(rows)  # keys are unique

    # Rows found by (section, name, dimension) hold the value the JSON has there.
    usage, features = dashboard["usage_trends"], dashboard["feature_adoption"]
    assert float(the_row(rows, "usage_trends", "active_users")["value"]) == usage["active_users"]
    point = usage["users_over_time"][2]
    assert float(the_row(rows, "usage_trends", "users_over_time", point["timestamp"])["value"]) == point["value"]
    page = usage["top_pages"][0]
    assert float(the_row(rows, "usage_trends", "top_pages.visitors", page["name"])["value"]) == page["visitors"]
    feature = features["features"][1]
    adoption = the_row(rows, "feature_adoption", "features.adoption_rate", feature["feature_name"])
    assert float(adoption["value"]) == feature["adoption_rate"] and adoption["unit"] == "ratio"
    week = feature["weekly_users"][-1]
    assert float(the_row(rows, "feature_adoption", "features.weekly_users", feature["feature_name"],
                         week["timestamp"])["value"]) == week["value"]
    experiment, variant = next((e, v) for e in dashboard["experiment_results"]["experiments"]
                               for v in e["variants"] if v["relative_lift_ci"] is not None)
    p_value = the_row(rows, "experiment_results", "experiments.variants.adjusted_p_value",
                      experiment["experiment_id"], variant["variant_id"])
    assert float(p_value["value"]) == variant["adjusted_p_value"] and p_value["unit"] == "probability"
    low = the_row(rows, "experiment_results", "experiments.variants.relative_lift_ci.low",
                  experiment["experiment_id"], variant["variant_id"])
    assert float(low["value"]) == variant["relative_lift_ci"][0]
    observed = the_row(rows, "experiment_results", "experiments.srm.observed", experiment["experiment_id"],
                       experiment["control"])
    assert float(observed["value"]) == experiment["srm"]["observed"][experiment["control"]]
    stars = the_row(rows, "feedback", "rating_distribution", "5")
    assert float(stars["value"]) == dashboard["feedback"]["rating_distribution"]["5"] and stars["unit"] == "count"
    segment = dashboard["user_segments"]["segments"][0]
    share = the_row(rows, "user_segments", "segments.percentage", segment["segment_name"])
    assert float(share["value"]) == segment["percentage"] and share["unit"] == "percent"
    step = dashboard["funnels"]["deployment"]["steps"][0]
    rate = the_row(rows, "funnels", "steps.completion_rate", "deployment", step["step_name"])
    assert float(rate["value"]) == step["completion_rate"] and rate["unit"] == "ratio"
    age = the_row(rows, "funnels", "sources.age_seconds", "deployment", "events")
    assert float(age["value"]) == dashboard["funnels"]["deployment"]["sources"]["events"]["age_seconds"]

    # Units as docs/api.md#csv-export defines them.
    for row in rows:
        field, value = row["name"].split(".")[-1], float(row["value"])
        if field == "bounce_rate":
            assert row["unit"] == "percent" and 0 <= value <= 100
        elif field.endswith("_rate"):
            assert row["unit"] == "ratio" and 0 <= value <= 1, row
        elif "p_value" in field:
            assert row["unit"] == "probability" and 0 <= value <= 1, row
        elif field.endswith(("_seconds", "_duration", "_completion_time", "_time_to_next_step")):  # durations
            assert row["unit"] == "seconds" and value >= 0, row


async def test_a_section_that_failed_has_no_rows_and_its_envelope_in_json(make_client):
    client, _ = await make_client()  # only Plausible: the other sections are disabled
    rows = parse_csv(await (await client.get("/api/v1/export/csv")).text())
    assert {row["section"] for row in rows} == {"usage_trends", "feature_adoption", "forecast", "anomalies"}
    exported = await (await client.get("/api/v1/export/json")).json()
    assert exported["feedback"]["error"]["code"] == "source_disabled"


async def test_xlsx_export_is_a_sheet_per_section_with_typed_numbers_as_a_download(make_demo_client):
    client, _ = await make_demo_client()
    response = await client.get("/api/v1/export/xlsx?time_range=7d")
    assert response.status == 200
    assert response.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert FILENAME.match(response.headers["Content-Disposition"])["ext"] == "xlsx"
    workbook = openpyxl.load_workbook(io.BytesIO(await response.read()))
    rows = parse_csv(await (await client.get("/api/v1/export/csv?time_range=7d")).text())
    assert workbook.sheetnames == list(dict.fromkeys(row["section"] for row in rows))
    usage = workbook["usage_trends"]
    header, units, whole = ([cell.value for cell in line] for line in usage.iter_rows(max_row=3))
    column = header.index("active_users")
    assert units[column] == "users" and whole[column] == float(the_row(rows, "usage_trends", "active_users")["value"])
    assert usage.cell(3, column + 1).data_type == "n"


@pytest.mark.slow  # renders a whole report from the demo
async def test_pdf_export_is_a_report_with_each_sections_headline_figures(make_demo_client):
    client, _ = await make_demo_client()
    response = await client.get("/api/v1/export/pdf?time_range=7d")
    assert response.status == 200 and response.content_type == "application/pdf"
    assert FILENAME.match(response.headers["Content-Disposition"])["ext"] == "pdf"
    reader = PdfReader(io.BytesIO(await response.read()))
    text = " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)
    dashboard = await (await client.get("/api/v1/dashboard?time_range=7d")).json()
    assert "Time range 7d" in text and f"{dashboard['usage_trends']['page_views']:,}" in text
    assert all(title in text for title in ("Usage trends", "Feature adoption", "Experiment results", "Funnels"))


@pytest.mark.parametrize(("form", "package"), [("pdf", "reportlab"), ("xlsx", "xlsxwriter")])
async def test_without_the_reports_extra_xlsx_and_pdf_are_501s_naming_it(make_client, monkeypatch, form, package):
    for module in [name for name in sys.modules
                   if name == package or name.startswith((f"{package}.", f"exporter.reports.{form}"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without the extra gives
    client, _ = await make_client()
    response = await client.get(f"/api/v1/export/{form}")
    assert response.status == 501
    error = (await response.json())["error"]
    assert error["code"] == "extra_not_installed" and INSTALL_HINT in error["message"] and package in error["message"]
    assert (await client.get("/api/v1/export/csv")).status == 200


async def test_unknown_format_is_a_404_naming_the_formats(make_client):
    client, _ = await make_client()
    response = await client.get("/api/v1/export/docx")
    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "unknown_format" and "json, csv, xlsx, pdf" in error["message"]
    response = await client.get("/api/v1/export/csv?time_range=1y")
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_time_range"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab|\\/ :-é"), max_size=6), min_size=1, max_size=4))
def test_dimension_labels_survive_any_pipe_or_backslash(parts):
    assert split_dimension(join_dimension(tuple(parts))) == parts


# --- the command ----------------------------------------------------------------------------------

@pytest.fixture
def clean_environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_command_exports_csv_from_the_demo(clean_environment, capsys):
    assert main(["export", "--format", "csv", "--time-range", "24h", "--demo"]) == 0
    rows = parse_csv(capsys.readouterr().out)
    assert {row["section"] for row in rows} == SECTIONS - {"retention"}  # weekly cohorts need a week
    assert {row["time_range"] for row in rows} == {"24h", ""}


def test_command_exports_json_with_the_given_configuration(clean_environment, demo_upstreams, tmp_path, capsys):
    config = tmp_path / "analytics.yaml"
    config.write_text("cache:\n  ttl_seconds: 60\n")
    for name, value in {"PLAUSIBLE_URL": demo_upstreams.plausible_url,
                        "PLAUSIBLE_API_KEY": demo_upstreams.plausible_api_key,
                        "PLAUSIBLE_SITE_ID": demo_upstreams.plausible_site_id,
                        "EXPERIMENTATION_URL": demo_upstreams.experimentation_url,
                        "FEEDBACK_URL": demo_upstreams.feedback_url,
                        "FEEDBACK_ADMIN_TOKEN": demo_upstreams.feedback_admin_token,
                        "EVENTS_PATH": str(demo_upstreams.events_path)}.items():
        clean_environment.setenv(name, value)
    assert main(["export", "--format", "json", "--config", str(config)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["time_range"] == "30d"
    assert {name: s["status"] for name, s in exported["sources"].items()} == dict.fromkeys(
        ("plausible", "experimentation", "feedback", "events"), "up")
    assert not [key for key in SECTIONS - {"funnels"} if "error" in exported[key]]


def test_command_reports_down_sources_in_the_output_and_exits_0(clean_environment, tmp_path, capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "analytics.yaml"
    config.write_text(f"sources:\n  plausible: {{url: '{closed}', site_id: x, max_retries: 0}}\n"
                      "  experimentation: {enabled: false}\n  feedback: {enabled: false}\n")
    assert main(["export", "--format", "json", "--time-range", "1h", "--config", str(config)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["usage_trends"]["error"]["code"] == "connection_error"
    assert exported["experiment_results"]["error"]["code"] == "source_disabled"
    assert exported["sources"]["plausible"]["status"] == "down"


def test_command_with_a_bad_configuration_exits_1_naming_the_key(clean_environment, tmp_path, capsys):
    config = tmp_path / "analytics.yaml"
    config.write_text("sources:\n  plausibel: {}\n")
    assert main(["export", "--format", "csv", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "configuration error" in err and "plausibel" in err


@pytest.mark.slow  # the command renders two whole reports; the endpoints' tests render each format
def test_command_exports_pdf_and_xlsx_as_binary_files_on_stdout(clean_environment, capsysbinary):
    assert main(["export", "--format", "pdf", "--time-range", "7d", "--demo"]) == 0
    pdf = capsysbinary.readouterr().out
    assert pdf.startswith(b"%PDF") and len(PdfReader(io.BytesIO(pdf)).pages) > 1
    assert main(["export", "--format", "xlsx", "--time-range", "7d", "--demo"]) == 0
    assert "usage_trends" in openpyxl.load_workbook(io.BytesIO(capsysbinary.readouterr().out)).sheetnames


def test_command_with_an_unknown_format_names_the_valid_ones(clean_environment, capsys):
    assert main(["export", "--format", "xml"]) == 2
    assert "json, csv, xlsx, pdf" in capsys.readouterr().err
