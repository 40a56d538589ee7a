"""The rendered /metrics passes ``promtool check metrics`` (the real tool), in both exposition formats.

promtool lints with the Prometheus text-format parser, also when it is given OpenMetrics. There, a
counter family is named without ``_total`` (``# TYPE analytics_page_views counter``) while its
sample is ``analytics_page_views_total``: the text parser reads that sample as a family of its own
without HELP and says so. That complaint, and only that one, is the format's and not ours; the
OpenMetrics body is also parsed by the reference OpenMetrics parser, which accepts nothing else.
"""

from __future__ import annotations

import re
import subprocess

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.tools import require_tool

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def promtool_complaints(text: str) -> tuple[int, list[str]]:
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    return result.returncode, [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


async def test_the_prometheus_text_format_is_clean(make_demo_client):
    client, _ = await make_demo_client()  # every source up: every family on show
    response = await client.get("/metrics")
    text = await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "analytics_experiments_significant" in text and "analytics_funnel_conversion_rate" in text
    assert promtool_complaints(text) == (0, [])


async def test_openmetrics_is_clean_but_for_the_text_parsers_reading_of_counters(make_demo_client):
    client, _ = await make_demo_client()
    response = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    text = await response.text()
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {family.name: family.type for family in text_string_to_metric_families(text)}  # strict: raises
    counters = {name for name, kind in families.items() if kind == "counter"}
    assert {"analytics_page_views", "analytics_source_requests"} <= counters

    _, complaints = promtool_complaints(text)
    artefacts = {f"{name}_total no help text" for name in counters}
    assert complaints and set(complaints) <= artefacts, set(complaints) - artefacts
    for name in counters:  # the family's HELP is there, under the name OpenMetrics gives it
        assert re.search(rf"^# HELP {name} \S", text, re.M)
