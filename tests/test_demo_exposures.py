"""The demo's experiment exposures (exporter/demo/exposures.py) and what ``serve --demo`` shows of them.

The exposures follow the simulated Experimentation Service's assignments and sit on seconds where
the user did something anyway, so every other analysis of the events file is unchanged; through
the service, the demo's metrics show a real CUPED variance reduction, and each planted case
(named by name, two variants, no variant, events only) comes out as docs/experiment-metrics.md says.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from exporter.analysis.experiments.event_metrics import EXPOSURE_EVENT
from exporter.config import load_config
from exporter.demo import exposures
from exporter.demo.events_file import write_events_file
from exporter.demo.experimentation import simulate_experiments
from exporter.demo.population import generate_population
from exporter.events.file_loader import load_events_file
from exporter.events.log_activity import daily_users, user_activity

NOW = datetime(2026, 3, 10, 14, 37, tzinfo=timezone.utc)
NOW_TS = int(NOW.timestamp())


@pytest.fixture(scope="module")
def population():
    return generate_population(42, now=NOW)


def test_exposures_follow_the_assignments_on_seconds_the_users_were_active(population, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events_file(population, path, upto=NOW_TS)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    active_seconds = {(r["user_id"], r["timestamp"]) for r in records if r["event"] != EXPOSURE_EVENT}
    exposed = [r for r in records if r["event"] == EXPOSURE_EVENT]
    assert exposed and all((r["user_id"], r["timestamp"]) in active_seconds for r in exposed)

    simulated = {s.plan.key: s for s in simulate_experiments(seed=42, now=NOW, user_ids=population.user_ids)}
    labels = {(s.plan.name if key == exposures.NAMED_BY_NAME else s.id): key for key, s in simulated.items()}
    seen = defaultdict(list)
    for record in exposed:
        seen[record["props"]["experiment"]].append(record)
    assert set(seen) == {label for label, key in labels.items() if simulated[key].started_at is not None} | {
        exposures.EVENTS_ONLY}
    for label, found in seen.items():
        if label == exposures.EVENTS_ONLY:
            continue
        experiment = simulated[labels[label]]
        assigned = {population.user_ids[user]: (experiment.plan.variants[arm].name, at) for user, arm, at in
                    zip(experiment.assigned_user, experiment.assigned_variant, experiment.assigned_at)}
        honest = [r for r in found if "variant" in r["props"] and r["props"]["variant"] == assigned[r["user_id"]][0]]
        for record in honest:
            moment = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            assert assigned[record["user_id"]][1] <= moment  # exposed after being assigned
            assert experiment.stopped_at is None or moment <= experiment.stopped_at.timestamp()
        planted = {exposures.TWO_VARIANTS[0]: exposures.TWO_VARIANTS[1],
                   exposures.WITHOUT_VARIANT[0]: exposures.WITHOUT_VARIANT[1]}.get(labels[label], 0)
        assert len(found) - len(honest) == planted
        assert len({r["user_id"] for r in honest}) == len(honest)  # one exposure per user


def test_the_exposures_change_no_other_analysis(population, tmp_path):
    with_exposures = tmp_path / "with.jsonl"
    write_events_file(population, with_exposures, upto=NOW_TS)
    without = tmp_path / "without.jsonl"
    without.write_text("".join(line for line in with_exposures.read_text().splitlines(keepends=True)
                               if EXPOSURE_EVENT not in line))
    logs = [load_events_file(path).log for path in (with_exposures, without)]
    config = load_config(environ={})  # the segments' breadth counts the configured features, as the service does
    features = {feature.event: feature.name for feature in config.features if feature.event}
    activities = [user_activity(log, now=NOW_TS, feature_events=features) for log in logs]
    columns = ("l28", "l28_prev", "recency", "breadth", "age")
    measured = [sorted(zip([log.user_names[u] for u in activity.users],
                           *(getattr(activity, name).tolist() for name in columns)))
                for log, activity in zip(logs, activities)]
    assert measured[0] == measured[1]
    start = (NOW_TS // 86_400 - 90) * 86_400
    assert daily_users(logs[0], ["deployment.deploy.deploy_application"], start, NOW_TS + 1) == \
        daily_users(logs[1], ["deployment.deploy.deploy_application"], start, NOW_TS + 1)


async def test_serve_demo_shows_the_metrics_with_a_real_variance_reduction(make_demo_client):
    client, _ = await make_demo_client()
    body = await (await client.get("/api/v1/experiment-results")).json()
    by_name = {e["experiment_name"]: e for e in body["experiments"]}
    measured = [e for e in body["experiments"] if e["status"] == "running" and "metrics" in e]
    assert len(measured) >= 5
    reductions = [one["variants"][0]["cuped"]["variance_reduction"] for e in measured for one in e["metrics"]
                  if one["metric"] == "deploys"]
    assert all(0.2 < reduction < 0.7 for reduction in reductions)  # the users' habits carry over
    assert all(row["cuped"] is None for e in measured for one in e["metrics"] if one["kind"] == "ratio"
               for row in one["variants"])
    assert by_name["One-Click Deploy Button"]["exposure"]["excluded_multiple_variants"] == exposures.TWO_VARIANTS[1]
    assert by_name["Service Catalog Search Autocomplete"]["exposure"]["skipped_without_variant"] == \
        exposures.WITHOUT_VARIANT[1]
    assert by_name["TechDocs Search Ranking"]["exposure"]["users"] > 0  # named by its name in the events
    assert by_name[exposures.EVENTS_ONLY]["status"] == "events_only"
    assert "metrics" not in by_name["AI Assistant Sidebar"]  # a draft: nobody exposed
    text = await (await client.get("/metrics")).text()
    assert 'analytics_experiment_metric_variance_reduction{experiment_id="' in text
    assert exposures.EVENTS_ONLY not in text
