"""Lint the Grafana dashboards: rules of grafana/dashboard-linter re-expressed in pytest, plus
the conventions of this repository (docs/deployment.md), and every query parsed by promtool.

Metric types come from the names: counters end in ``_total``, histograms expose ``_bucket``,
``_sum`` and ``_count``; everything else is a gauge.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import yaml

from tests.grafana_dashboards import (
    DASHBOARD_DIR,
    PROVISIONING_DIR,
    format_selection,
    interpolate,
    load_dashboards,
    panels,
    parse_label_values,
    queries,
    variable_query,
    variables,
)
from tests.tools import require_tool

DASHBOARDS = load_dashboards()
CURRENT_PANEL_TYPES = {"timeseries", "stat", "bargauge", "table", "piechart", "state-timeline"}
DATASOURCE_REFERENCES = {"$datasource", "${datasource}"}
RATE_FUNCTIONS = {"rate", "irate", "increase"}

# Units by what a metric measures; metrics not listed here (counts, scores, p-values) may use any unit.
RATIO_METRICS = {
    "analytics_feature_adoption_rate", "analytics_experiment_conversion_rate", "analytics_experiment_relative_lift",
    "analytics_experiment_chance_to_beat_control", "analytics_feedback_csat_ratio", "analytics_funnel_conversion_rate",
    "analytics_funnel_step_completion_rate", "analytics_funnel_drop_off_rate",
    "analytics_breakdown_funnel_conversion_rate",
    "analytics_experiment_metric_relative_lift", "analytics_experiment_metric_variance_reduction",
}
PERCENTAGE_METRICS = {"analytics_bounce_rate_percentage"}  # 0..100, as Plausible reports it
DATE_UNITS = {"dateTimeAsIso", "dateTimeAsSystem", "dateTimeFromNow"}


def panel_cases() -> Iterator[Any]:
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            yield pytest.param(dashboard, panel, id=f"{name}/{panel.get('title') or panel.get('id')}")


def query_cases() -> Iterator[Any]:
    for dashboard in DASHBOARDS.values():
        for query in queries(dashboard):
            yield pytest.param(query, id=query.name)


# ------------------------------------------------------------------------------------------ a small PromQL reader

TOKEN = re.compile(r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
    | (?P<range>\[[^\]]*\])
    | (?P<matchers>\{(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[^}"'])*\})
    | (?P<name>[A-Za-z_:][\w:]*)
    | (?P<number>\d[\w.]*)  # numbers and durations
    | (?P<open>\()
    | (?P<close>\))
    | (?P<other>\S)
""", re.X)
GROUPING_CLAUSES = {"by", "without", "on", "ignoring", "group_left", "group_right"}
LABEL_LIST = "<label list>"
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


@dataclass
class Selector:
    """A vector selector and where it sits: the function or aggregation whose argument it is."""

    metric: str
    matchers: str
    range: str | None
    enclosing_call: str | None


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression (enough of the grammar for these dashboards)."""
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr)]
    found: list[Selector] = []
    calls: list[str | None] = []  # per open parenthesis: the call it belongs to, LABEL_LIST, or None
    pending_call: str | None = None  # the call the next "(" opens
    label_list_next = False  # the next "(" opens the label list of a by/without/on/... clause
    for index, (kind, text) in enumerate(tokens):
        previous = tokens[index - 1] if index else (None, "")
        following = tokens[index + 1][0] if index + 1 < len(tokens) else None
        if calls and calls[-1] == LABEL_LIST and kind != "close":
            continue
        if kind == "open":
            calls.append(LABEL_LIST if label_list_next else pending_call)
            if not label_list_next:
                pending_call = None
            label_list_next = False
        elif kind == "close":
            calls.pop()
        elif kind == "name" and text in GROUPING_CLAUSES:
            label_list_next = following == "open"
            if text in ("by", "without") and previous[0] == "name":
                pending_call = previous[1]  # `sum by (x) (...)`: the body follows the label list
        elif kind == "name" and following == "open":
            pending_call = text
        elif kind == "name" and index + 1 < len(tokens) and tokens[index + 1][1] in ("by", "without"):
            continue  # an aggregation whose body follows its label list
        elif kind == "name" and text.lower() not in KEYWORDS:
            found.append(Selector(text, "", None, calls[-1] if calls else None))
        elif kind == "matchers":
            if previous == ("name", found[-1].metric if found else None):
                found[-1].matchers = text
            else:
                found.append(Selector("", text, None, calls[-1] if calls else None))
        elif kind == "range" and found and previous[0] in ("name", "matchers"):
            found[-1].range = text
    return found


def is_counter(metric: str) -> bool:
    return metric.endswith(("_total", "_bucket", "_sum", "_count"))


def allowed_units(expr: str) -> set[str] | None:
    """Units that fit what ``expr`` measures, or None when its metrics do not decide it."""
    kinds = set()
    for selector in selectors(expr):
        metric = selector.metric
        if metric in RATIO_METRICS:
            kinds.add("ratio")
        elif metric in PERCENTAGE_METRICS:
            kinds.add("percentage")
        elif metric.endswith("_timestamp_seconds"):
            kinds.add("age" if "time()" in expr else "timestamp")
        elif metric.endswith(("_seconds", "_seconds_sum", "_seconds_bucket")):
            kinds.add("seconds")
    units = {"ratio": {"percentunit"}, "percentage": {"percent"}, "seconds": {"s"}, "age": {"s"},
             "timestamp": DATE_UNITS}
    return units[kinds.pop()] if len(kinds) == 1 else None


def unit_of_target(panel: dict[str, Any], ref_id: str) -> str | None:
    """The unit Grafana shows for one target: an override for its field or frame, else the default."""
    for override in panel["fieldConfig"].get("overrides", []):
        matcher = override["matcher"]
        if (matcher["id"], matcher["options"]) in (("byName", f"Value #{ref_id}"), ("byFrameRefID", ref_id)):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    return prop["value"]
    return panel["fieldConfig"]["defaults"].get("unit")


def test_the_reader_finds_selectors_their_ranges_and_calls():
    expr = ('histogram_quantile(0.95, sum by (source, le) (rate(a_bucket{job="$job"}[$__rate_interval])))'
            ' / on (job) group_left (name) b_info{name=~"x|y"} and c unless time() - d offset 5m')
    found = [(s.metric, s.matchers, s.range, s.enclosing_call) for s in selectors(expr)]
    assert found == [("a_bucket", '{job="$job"}', "[$__rate_interval]", "rate"),
                     ("b_info", '{name=~"x|y"}', None, None), ("c", "", None, None), ("d", "", None, None)]
    assert [s.enclosing_call for s in selectors('sum without (rating) (x{rating="5"})')] == ["sum"]


# ------------------------------------------------------------------------------------------ dashboards

def test_there_is_an_overview_and_one_dashboard_per_area():
    uids = {dashboard["uid"] for dashboard in DASHBOARDS.values()}
    assert uids == {"analytics-overview", "analytics-usage", "analytics-features", "analytics-experiments",
                    "analytics-segments-funnels", "analytics-feedback", "analytics-service-health",
                    "analytics-retention", "analytics-teams"}


def test_uids_are_fixed_and_unique():
    uids = [dashboard.get("uid") for dashboard in DASHBOARDS.values()]
    assert all(isinstance(uid, str) and re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids), uids
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_a_templated_prometheus_datasource_and_no_import_placeholders(name):
    dashboard = DASHBOARDS[name]
    (datasource,) = [v for v in variables(dashboard) if v["name"] == "datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    assert "${DS_" not in (DASHBOARD_DIR / name).read_text()
    assert "__inputs" not in dashboard, "import placeholders break file provisioning"


def test_area_dashboards_select_windows_funnels_experiments_and_more():
    chosen = {d["uid"]: [v["name"] for v in variables(d)] for d in DASHBOARDS.values()}
    assert chosen == {
        "analytics-overview": ["datasource", "job"],
        "analytics-usage": ["datasource", "job", "window", "team"],
        "analytics-features": ["datasource", "job", "feature_window", "feature"],
        "analytics-experiments": ["datasource", "job", "experiment"],
        "analytics-segments-funnels": ["datasource", "job", "funnel", "funnel_window", "team"],
        "analytics-feedback": ["datasource", "job", "feedback_window"],
        "analytics-service-health": ["datasource", "job", "source"],
        "analytics-retention": ["datasource", "job"],
        "analytics-teams": ["datasource", "job", "team", "window", "funnel", "funnel_window"],
    }


@pytest.mark.parametrize("name", DASHBOARDS)
def test_query_variables_use_the_datasource_and_label_values(name):
    for variable in variables(DASHBOARDS[name]):
        if variable["type"] == "datasource":
            continue
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"]["uid"] in DATASOURCE_REFERENCES, variable["name"]
        parse_label_values(variable_query(variable))


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panel_ids_are_unique_and_the_grid_is_24_wide(name):
    ids = [panel["id"] for panel in panels(DASHBOARDS[name])]
    assert len(set(ids)) == len(ids)
    for panel in panels(DASHBOARDS[name]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panel_titles_are_unique_within_a_dashboard(name):
    titles = [panel["title"] for panel in panels(DASHBOARDS[name])]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_links_lead_to_the_other_analytics_dashboards(name):
    dashboard = DASHBOARDS[name]
    uids = {d["uid"] for d in DASHBOARDS.values()}
    tags = {tag for d in DASHBOARDS.values() for tag in d.get("tags", [])}
    assert any(link["type"] == "dashboards" and set(link["tags"]) <= tags and link["tags"]
               for link in dashboard.get("links", [])), "no link to the other dashboards"
    assert all("analytics-dashboard" in d["tags"] for d in DASHBOARDS.values())
    for panel in panels(dashboard):
        for link in panel.get("links", []):
            target = re.match(r"/d/([\w-]+)", link["url"])
            assert target and target.group(1) in uids, link["url"]


@pytest.mark.parametrize(("dashboard", "panel"), list(panel_cases()))
def test_panel_uses_the_datasource_variable(dashboard, panel):
    assert panel["datasource"]["uid"] in DATASOURCE_REFERENCES
    assert panel["targets"], "a panel without queries"
    for target in panel["targets"]:
        assert target["datasource"]["uid"] in DATASOURCE_REFERENCES, target["refId"]


@pytest.mark.parametrize(("dashboard", "panel"), list(panel_cases()))
def test_panel_type_is_current(dashboard, panel):
    assert panel["type"] in CURRENT_PANEL_TYPES


@pytest.mark.parametrize(("dashboard", "panel"), list(panel_cases()))
def test_panel_is_titled_and_described(dashboard, panel):
    assert panel.get("title", "").strip()
    assert len(panel.get("description", "").strip()) >= 20, "describe what the panel shows and where it comes from"


@pytest.mark.parametrize(("dashboard", "panel"), list(panel_cases()))
def test_panel_units_fit_the_metrics(dashboard, panel):
    assert panel["fieldConfig"]["defaults"].get("unit"), "unit not set"
    for target in panel["targets"]:
        allowed = allowed_units(target["expr"])
        if allowed is not None:
            assert unit_of_target(panel, target["refId"]) in allowed, (target["refId"], target["expr"])


@pytest.mark.parametrize("query", list(query_cases()))
def test_counters_only_through_rate_functions_and_gauges_never(query):
    for selector in selectors(query.expr):
        through_rate = selector.enclosing_call in RATE_FUNCTIONS
        if is_counter(selector.metric):
            assert through_rate, f"{selector.metric} is a counter: its raw value means nothing on a dashboard"
        else:
            assert not through_rate, f"{selector.enclosing_call}() of the gauge {selector.metric}"


@pytest.mark.parametrize("query", list(query_cases()))
def test_rate_functions_use_the_rate_interval(query):
    for selector in selectors(query.expr):
        if selector.enclosing_call in RATE_FUNCTIONS:
            assert selector.range == "[$__rate_interval]", selector


@pytest.mark.parametrize("query", list(query_cases()))
def test_every_selector_filters_on_the_job_variable(query):
    for selector in selectors(query.expr):
        assert re.search(r'\bjob="\$job"', selector.matchers), selector


def test_every_query_is_valid_promql(tmp_path):
    """promtool parses every panel query and every variable's selector (variables substituted)."""
    promtool = require_tool("promtool")
    rules = []
    for dashboard in DASHBOARDS.values():
        values = placeholder_values(dashboard)
        rules += [{"record": f"dashboard_check:{index}", "expr": interpolate(query.expr, values),
                   "labels": {"query": query.name}}
                  for index, query in enumerate(queries(dashboard))]
        for variable in variables(dashboard):
            if variable["type"] == "query":
                selector, _ = parse_label_values(variable_query(variable))
                rules.append({"record": "dashboard_check:variable", "expr": interpolate(selector or "up", values),
                              "labels": {"query": f"{dashboard['uid']}/${variable['name']}"}})
    path = tmp_path / "dashboard-queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def placeholder_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """A syntactically faithful value for every variable: Grafana's formatting of two made-up values."""
    values = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
    for variable in variables(dashboard):
        values[variable["name"]] = format_selection(variable, ["a.b", "c"] if variable.get("multi") else ["a.b"],
                                                    options=["a.b", "c"])
    return values


# ------------------------------------------------------------------------------------------ provisioning

def test_provisioning_points_grafana_at_prometheus_and_the_dashboards():
    datasources = yaml.safe_load((PROVISIONING_DIR / "datasources" / "prometheus.yaml").read_text())
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "dashboards.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
