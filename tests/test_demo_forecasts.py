"""``serve --demo`` flags the anomalies planted in its population (docs/forecasting.md#the-demo):
the deployment outage a week ago in the deployment feature and funnel, the page view spike
yesterday in the page views, in the endpoint, the dashboard and the metrics."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from exporter.demo.population import generate_population


async def test_the_demo_flags_its_planted_anomalies(make_demo_client, clock):
    client, _ = await make_demo_client()
    response = await client.get("/api/v1/anomalies?time_range=30d")
    assert response.status == 200
    body = await response.json()
    flagged = {(item["series"], item["timestamp"][:10], item["direction"]) for item in body["anomalies"]}
    planted = {anomaly.kind: (date(1970, 1, 1) + timedelta(days=anomaly.day)).isoformat()
               for anomaly in generate_population(42, now=datetime.fromtimestamp(clock(), timezone.utc)).planted}
    assert {("pageviews", planted["pageview_spike"], "up"),
            ("feature:Deploy Application", planted["deployment_outage"], "down"),
            ("funnel_entries:deployment", planted["deployment_outage"], "down")} <= flagged
    assert body["insufficient_history"] == []
    dashboard = await (await client.get("/api/v1/dashboard?time_range=7d")).json()
    assert ("pageviews", planted["pageview_spike"], "up") in {
        (item["series"], item["timestamp"][:10], item["direction"]) for item in dashboard["anomalies"]["anomalies"]}
    flags = {sample.labels["series"]: sample.value
             for family in text_string_to_metric_families(await (await client.get("/metrics")).text())
             for sample in family.samples if sample.name == "analytics_anomaly"}
    assert flags["pageviews"] == 1  # yesterday, the last complete day: the alert's signal
