"""The Prometheus alerting rules: valid for promtool, unit-tested by promtool, and each one
carrying what an on-call person needs (severity, summary, description, a `for` duration)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.grafana_dashboards import ROOT
from tests.tools import require_tool

RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RULES_FILE = RULES_DIR / "analytics.rules.yaml"
# The weekly rules are tested in a file of their own, evaluated hourly rather than every minute.
RULES_TEST_FILES = [RULES_DIR / "analytics.rules.test.yaml", RULES_DIR / "analytics.rules.weekly.test.yaml"]
SEVERITIES = {"critical", "warning", "info"}
ALERTS = [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=60,
                          cwd=RULES_DIR)


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", RULES_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", *(path.name for path in RULES_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES_TEST_FILES)


def test_the_platform_teams_alerts_exist():
    expressions = {rule["alert"]: rule["expr"] for rule in ALERTS}
    assert "analytics_source_up == 0" in expressions["AnalyticsSourceDown"]
    assert "investigate_srm" in expressions["AnalyticsExperimentSampleRatioMismatch"]
    assert "analytics_experiment_srm_p_value < 0.001" in expressions["AnalyticsExperimentSampleRatioMismatch"]
    assert "analytics_feature_adoption_rate" in expressions["AnalyticsFeatureAdoptionDropped"]
    assert "analytics_funnel_conversion_rate" in expressions["AnalyticsFunnelConversionDropped"]
    assert "analytics_lifecycle_quick_ratio" in expressions["AnalyticsUsersLeakingAway"]
    assert expressions["AnalyticsAnomaly"] == "analytics_anomaly == 1"
    assert next(rule["for"] for rule in ALERTS if rule["alert"] == "AnalyticsSourceDown") == "15m"


def test_every_alert_is_unit_tested():
    tested = {case["alertname"] for path in RULES_TEST_FILES for test in yaml.safe_load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert tested == {rule["alert"] for rule in ALERTS}


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_description_and_duration(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"]) > len(rule["annotations"]["summary"])
    assert rule.get("for"), "without `for` a single failed evaluation pages someone"
