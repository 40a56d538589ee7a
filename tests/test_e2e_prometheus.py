"""End to end: the service in demo mode, a real Prometheus scraping it every second, and every
query of every dashboard panel and every alert rule evaluated through Prometheus' HTTP API.

The service runs as the real command (``python -m exporter serve --demo``) with a 2-second cache
TTL, so within the test's few seconds the snapshots refresh several times and counters and the
refresh histogram move, as they do over minutes in production. Template variables get real
values the way Grafana gets them (label values through Prometheus' API, formatted as Grafana's
Prometheus datasource formats them). An alert condition such as ``x == 0`` is evaluated on the
series it looks at (``x``): "returns data" would otherwise depend on whether it fires.

Under ``CI=true`` a missing ``prometheus`` binary fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest
import yaml

from devtools.processes import free_port
from tests.grafana_dashboards import (
    ROOT,
    Query,
    all_queries,
    format_selection,
    interpolate,
    load_dashboards,
    parse_label_values,
    variable_query,
    variable_references,
    variables,
)
from tests.tools import require_tool

pytestmark = pytest.mark.slow  # a real Prometheus scraping the real command: seconds of scrapes and rule evaluations

RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "analytics.rules.yaml"
SCRAPE_JOB = "analytics-dashboard"
CACHE_TTL_SECONDS = 2
MIN_SCRAPES = 5
# Grafana's $__rate_interval for the last minutes of data; the range covers every scrape made so far.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1s", "__range": "1m"}
STARTUP_TIMEOUT_SECONDS = 60
# How long a query may take to show data after the first scrapes (rates need two samples of a moved counter).
DATA_TIMEOUT_SECONDS = 30
NEVER_EVALUATED = "0001-01-01T00:00:00Z"  # Prometheus' lastEvaluation of a rule not evaluated yet


# ------------------------------------------------------------------------------------------ alert conditions

SET_OPERATOR = re.compile(r"\b(?:and|or|unless)\b")
COMPARISON = re.compile(r"==|!=|>=|<=|>|<")
LEADING_MODIFIERS = re.compile(
    r"^\s*(?:bool\b)?\s*(?:(?:on|ignoring)\s*\([^)]*\))?\s*(?:(?:group_left|group_right)\s*(?:\([^)]*\))?)?")
NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
ABSENT = re.compile(r"^absent(?:_over_time)?\s*\((.*)\)$", re.S)


def split_top_level(expr: str, operator: re.Pattern[str]) -> list[str]:
    """``expr`` cut at the matches of ``operator`` outside parentheses, brackets, braces and strings."""
    top_level = []
    depth, quote = 0, None
    for index, char in enumerate(expr):
        if quote:
            if char == quote and expr[index - 1] != "\\":
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        top_level.append(depth == 0 and quote is None)
    pieces, start = [], 0
    for match in operator.finditer(expr):
        if top_level[match.start()] and top_level[match.end() - 1]:
            pieces.append(expr[start:match.start()])
            start = match.end()
    return [*pieces, expr[start:]]


def condition_operands(expr: str) -> list[str]:
    """The series an alert condition looks at.

    ``a < 0.8 * b and on (x) c >= 20`` -> ``[a, 0.8 * b, c]``: set operators and comparisons are
    cut, number literals and matching modifiers dropped, ``absent(x)`` looks at ``x``.
    """
    operands = []
    for part in split_top_level(expr, SET_OPERATOR):
        for side in split_top_level(LEADING_MODIFIERS.sub("", part, count=1), COMPARISON):
            side = LEADING_MODIFIERS.sub("", side, count=1).strip()
            absent = ABSENT.match(side)
            if absent:
                side = absent.group(1).strip()
            if not NUMBER.match(side):
                operands.append(side)
    return operands


def alert_operand_cases() -> Iterator[Any]:
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            operands = condition_operands(rule["expr"])
            assert operands, f"{rule.get('alert')}: nothing to evaluate in {rule['expr']!r}"
            for index, operand in enumerate(operands):
                yield pytest.param(operand, id=f"{rule.get('alert') or rule.get('record')}/{index}")


def test_condition_operands_cut_comparisons_and_set_operators():
    expr = ('a{x="1"} < 0.8 * avg_over_time(a[7d])\nand on (job, f) max by (job, f) (c{y=~"p|q>"}) >= 20\n'
            'or absent(d) unless e == bool 1')
    assert condition_operands(expr) == ['a{x="1"}', "0.8 * avg_over_time(a[7d])", 'max by (job, f) (c{y=~"p|q>"})',
                                        "d", "e"]


# ------------------------------------------------------------------------------------------ the running stack

class Prometheus:
    """Prometheus' HTTP API, and the deadline by which scraped data must show."""

    def __init__(self, base_url: str, deadline: float) -> None:
        self.base_url = base_url
        self.deadline = deadline

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.base_url}{path}?{urlencode(params, doseq=True)}"
        with urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)

    def label_values(self, label: str, selector: str | None) -> list[str]:
        return self.api(f"/api/v1/label/{label}/values", **({"match[]": selector} if selector else {}))

    def query_until_data(self, expr: str) -> dict[str, Any]:
        """Poll ``expr`` until it has a finite sample or the deadline passes; the last answer."""
        while True:
            answer = self.query(expr)
            if has_finite_sample(answer) or time.monotonic() > self.deadline:
                return answer
            time.sleep(0.5)


def has_finite_sample(answer: dict[str, Any]) -> bool:
    result = answer["result"]
    if answer["resultType"] == "scalar":
        samples = [result]
    elif answer["resultType"] == "vector":
        samples = [series["value"] for series in result]
    else:
        samples = [value for series in result for value in series["values"]]
    return any(math.isfinite(float(value)) for _, value in samples)


@contextmanager
def running(argv: list[str], log: Path, stop_signal: int, **options: Any) -> Iterator[subprocess.Popen]:
    """Run ``argv`` with its output in ``log``; stop it with ``stop_signal`` (then kill) on exit."""
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, **options)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(stop_signal)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {STARTUP_TIMEOUT_SECONDS} s\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


def answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def prometheus_config(service_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{"job_name": SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{service_port}"]}]}],
    }


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prometheus_binary = require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("e2e")
    service_port, prometheus_port = free_port(), free_port()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(service_port)))
    environment = {**os.environ, "REFRESH_INTERVAL": str(CACHE_TTL_SECONDS),
                   "ANALYTICS_CONFIG": str(ROOT / "config" / "analytics.yaml")}
    with ExitStack() as stack:
        service_log = workdir / "service.log"
        # SIGINT, not SIGTERM: the command then removes its demo files on the way out. A shell that
        # started pytest in the background hands down an ignored SIGINT, hence the reset.
        service = stack.enter_context(running(
            [sys.executable, "-m", "exporter", "serve", "--demo", "--host", "127.0.0.1", "--port", str(service_port)],
            service_log, signal.SIGINT, cwd=ROOT, env=environment,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
        wait_for(lambda: answers(f"http://127.0.0.1:{service_port}/health"), "the service answering", service,
                 service_log)

        prometheus_log = workdir / "prometheus.log"
        server = stack.enter_context(running(
            [prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
            prometheus_log, signal.SIGTERM))
        base_url = f"http://127.0.0.1:{prometheus_port}"
        wait_for(lambda: answers(f"{base_url}/-/ready"), "Prometheus ready", server, prometheus_log)

        api = Prometheus(base_url, deadline=math.inf)
        scraped = f'count_over_time(up{{job="{SCRAPE_JOB}"}}[1m]) >= {MIN_SCRAPES} and up{{job="{SCRAPE_JOB}"}} == 1'
        wait_for(lambda: bool(api.query(scraped)["result"]), f"{MIN_SCRAPES} successful scrapes", server,
                 prometheus_log)
        api.deadline = time.monotonic() + DATA_TIMEOUT_SECONDS
        yield api


@pytest.fixture(scope="module")
def variable_values(prometheus: Prometheus) -> Callable[[str], dict[str, str]]:
    """Dashboard uid -> every variable's value, resolved as Grafana resolves them (memoized)."""
    dashboards = {dashboard["uid"]: dashboard for dashboard in load_dashboards().values()}
    resolved: dict[str, dict[str, str]] = {}

    def values(uid: str) -> dict[str, str]:
        if uid not in resolved:
            resolved[uid] = resolve_variables(prometheus, dashboards[uid])
        return resolved[uid]

    return values


def resolve_variables(prometheus: Prometheus, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each query variable in order: label_values() through the API, then the saved or first selection."""
    values = dict(BUILTIN_VARIABLES)
    for variable in variables(dashboard):
        if variable["type"] == "datasource":
            continue
        selector, label = parse_label_values(variable_query(variable))
        options = sorted(prometheus.label_values(label, interpolate(selector, values) if selector else None))
        saved = variable.get("current", {}).get("value")
        if variable.get("includeAll") and saved in (None, "$__all", ["$__all"]):
            selected = ["$__all"]
        elif saved in options:
            selected = [saved]
        else:
            assert options, f"{dashboard['uid']}: variable ${variable['name']} has no values ({selector}, {label})"
            selected = options[:1]
        values[variable["name"]] = format_selection(variable, selected, options)
    return values


def select_the_largest(prometheus: Prometheus, dashboard: dict[str, Any], name: str,
                       values: dict[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """The option of variable ``name`` whose series sum highest over its own selector, every option, and
    ``values`` with that option alone selected (formatted as Grafana formats one chosen value)."""
    (variable,) = [v for v in variables(dashboard) if v["name"] == name]
    selector, label = parse_label_values(variable_query(variable))
    assert selector, f"{dashboard['uid']}: ${name} has no selector to rank its values by"
    selector = interpolate(selector, values)
    options = prometheus.label_values(label, selector)
    ranked = prometheus.query_until_data(f"topk(1, sum by ({label}) ({selector}))")["result"]
    assert ranked, f"{dashboard['uid']}: ${name} has no values ({selector}, {label})"
    chosen = ranked[0]["metric"][label]
    return chosen, options, {**values, name: format_selection(variable, [chosen], options)}


# ------------------------------------------------------------------------------------------ the checks

@pytest.mark.parametrize("query", all_queries(), ids=lambda query: query.name)
def test_dashboard_query_returns_data(prometheus: Prometheus, variable_values, query: Query):
    expr = interpolate(query.expr, variable_values(query.dashboard_uid))
    answer = prometheus.query_until_data(expr)
    assert has_finite_sample(answer), f"{expr}\nanswered {answer}"


@pytest.mark.parametrize("query", [query for query in all_queries() if "team" in variable_references(query.expr)],
                         ids=lambda query: query.name)
def test_team_query_shows_the_one_team_selected(prometheus: Prometheus, variable_values, query: Query):
    """All teams, the default, is an allValue matching any value: here the largest team alone is selected, and
    the query returns data of that team and of no other (rows for all users, without a team, may stay)."""
    (dashboard,) = [d for d in load_dashboards().values() if d["uid"] == query.dashboard_uid]
    team, teams, values = select_the_largest(prometheus, dashboard, "team", variable_values(query.dashboard_uid))
    expr = interpolate(query.expr, values)
    answer = prometheus.query_until_data(expr)
    assert has_finite_sample(answer), f"{expr}\nanswered {answer}"
    shown = {series["metric"].get("value") for series in answer["result"]}
    assert team in shown and not shown & (set(teams) - {team}), (team, shown)


@pytest.mark.parametrize("operand", list(alert_operand_cases()))
def test_alert_rule_looks_at_served_series(prometheus: Prometheus, operand: str):
    answer = prometheus.query_until_data(operand)
    assert has_finite_sample(answer), f"{operand}\nanswered {answer}"


def test_prometheus_loaded_and_evaluated_every_rule(prometheus: Prometheus):
    rule_names = {rule.get("alert") for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
                  for rule in group["rules"]}
    while True:
        loaded = [rule for group in prometheus.api("/api/v1/rules")["groups"] for rule in group["rules"]]
        evaluated = all(rule["lastEvaluation"] != NEVER_EVALUATED for rule in loaded)
        if evaluated or time.monotonic() > prometheus.deadline:
            break
        time.sleep(0.5)
    assert {rule["name"] for rule in loaded} == rule_names
    assert [(rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"] == []
