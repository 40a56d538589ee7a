"""Experiments measured on events, both backends: the events file and a ClickHouse table holding the
same seeded events give the same exposures and per-arm sums, through the service's own clients (the
ClickHouse SQL runs on the real engine, chdb, behind ClickHouse's HTTP interface on loopback), and
the same ``/api/v1/experiment-results``.

The logs are seeded: users exposed once or more, to two variants, without a variant or without an
experiment, an experiment named by its name, metric events at whole days and seconds from the
exposures (window and pre-period edges hit exactly), events after the end, hostile labels.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devtools.clickhouse import PASSWORD, USER, ChdbEngine, ClickHouseHttpFront, clickhouse_datetime
from exporter.analysis.experiments.event_metrics import (
    EXPERIMENT_PROPERTY,
    EXPOSURE_EVENT,
    VARIANT_PROPERTY,
    CupedSettings,
    ExperimentMetricsSettings,
    MetricDefinition,
)
from exporter.config import EventsConfig
from exporter.events.clickhouse_source import ClickHouseEventsSource
from exporter.events.file_source import EventsFileSource
from exporter.health import HealthRegistry
from exporter.secrets import Secret
from tests.conftest import FakeClock, seeds
from tests.fakes.experimentation import FakeExperimentation, experiment_record
from tests.tools import require_chdb

NOW = 1_780_000_000
DAY = 86_400
HOSTILE = ("it's'); DROP TABLE events; --", "back\\slash\\", "tab\tnew\nline")
KNOWN = experiment_record(1)
NAMED = experiment_record(2)  # its exposures carry its name
EXPERIMENTS = (KNOWN["id"], NAMED["name"], "events-only", HOSTILE[1])
VARIANTS = ("control", "treatment", "alt", HOSTILE[2])
EVENTS = ("deploy", "deploy.failed", "app.activated", HOSTILE[0])
SUFFIX = itertools.count()

Event = tuple[str, str, int, dict[str, str]]  # user, event name, epoch seconds, properties


def seeded_log(seed: int) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for number in range(rng.randint(5, 60)):
        user = f"user-{number}"
        anchors = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            t = NOW - rng.randint(-1, 20) * DAY + rng.choice([0, 1, 3_600, rng.randint(0, DAY)])
            properties = {EXPERIMENT_PROPERTY: rng.choice(EXPERIMENTS), VARIANT_PROPERTY: rng.choice(VARIANTS[:2] * 4
                                                                                                    + VARIANTS)}
            if rng.random() < 0.1:
                del properties[VARIANT_PROPERTY]
            if rng.random() < 0.05:
                del properties[EXPERIMENT_PROPERTY]
            events.append((user, EXPOSURE_EVENT, t, properties))
            anchors.append(t)
        for _ in range(rng.randint(0, 20)):
            grain = rng.choice([1, 3_600, DAY])
            t = rng.choice(anchors) + grain * rng.randint(-4 * DAY // grain, 4 * DAY // grain) + rng.choice([-1, 0, 1])
            events.append((user, rng.choice(EVENTS), t, {}))
    return events


SETTINGS = (
    ExperimentMetricsSettings(metrics=(
        MetricDefinition("deploys", "count", event="deploy", window_days=2),
        MetricDefinition("activated", "conversion", event="app.activated", window_days=1),
        MetricDefinition("failures", "ratio", numerator="deploy.failed", denominator="deploy", window_days=3),
        MetricDefinition("hostile", "count", event=HOSTILE[0], window_days=1),
        MetricDefinition("ghost", "count", event="never.happens")), cuped=CupedSettings(2)),
    ExperimentMetricsSettings(metrics=(MetricDefinition("deploys", "count", event="deploy", window_days=1),),
                              cuped=None),
    ExperimentMetricsSettings(),
)


def write_file(path: Path, events: list[Event]) -> Path:
    lines = []
    for user, name, t, properties in events:
        stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(json.dumps({"user_id": user, "event": name, "timestamp": stamp, "properties": properties}) + "\n")
    path.write_text("".join(lines))
    return path


def create_table(engine: ChdbEngine, events: list[Event]) -> str:
    table = f"exposure_events_{next(SUFFIX)}"
    engine.execute(f"CREATE TABLE default.{table} (user_id String, event LowCardinality(String), timestamp DateTime, "
                   "properties Map(String, String)) ENGINE = MergeTree ORDER BY (event, timestamp)")
    engine.insert_rows(f"default.{table}", ({"user_id": user, "event": name, "timestamp": clickhouse_datetime(t),
                                             "properties": properties} for user, name, t, properties in events))
    return table


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse-experiment-metrics"))


@pytest.fixture
async def clickhouse_url(aiohttp_server, engine) -> str:
    return str((await aiohttp_server(ClickHouseHttpFront(engine).app())).make_url("/"))


def sources(path: Path, url: str, table: str) -> tuple[EventsFileSource, ClickHouseEventsSource]:
    health = HealthRegistry(FakeClock(NOW))
    health.register("events")
    on_file = EventsFileSource(EventsConfig(path=str(path)), health, clock=FakeClock(NOW),
                               properties=[EXPERIMENT_PROPERTY, VARIANT_PROPERTY])
    config = EventsConfig(kind="clickhouse", url=url, user=USER, password=Secret(PASSWORD), table=table)
    on_clickhouse = ClickHouseEventsSource(config, health)
    return on_file, on_clickhouse


@pytest.mark.parametrize("seed", seeds(6))
async def test_both_backends_give_the_same_exposures_and_sums(engine, clickhouse_url, tmp_path, seed):
    events = seeded_log(seed)
    on_file, on_clickhouse = sources(write_file(tmp_path / "events.jsonl", events), clickhouse_url,
                                     create_table(engine, events))
    try:
        found_any = False
        named = {NAMED["name"]: NAMED["id"]}
        for settings, end, keys in itertools.product(SETTINGS, (NOW + 1, NOW - DAY), ({}, named)):
            from_file = await on_file.exposure_sums(settings, end=end, experiment_keys=keys)
            assert await on_clickhouse.exposure_sums(settings, end=end, experiment_keys=keys) == from_file
            found_any |= bool(from_file.experiments)
        assert found_any
    finally:
        await on_clickhouse.close()


async def test_the_service_serves_the_same_experiment_metrics_from_either_backend(make_client, aiohttp_server, engine,
                                                                                   clickhouse_url, tmp_path, clock):
    now = int(clock())
    events = [(user, name, t - NOW + now, properties) for user, name, t, properties in seeded_log(100)]
    fake = FakeExperimentation([KNOWN, NAMED], {KNOWN["id"]: [(1000, 200), (1000, 260)],
                                                NAMED["id"]: [(500, 100), (500, 101)]})
    common = {"sources.experimentation.url": str((await aiohttp_server(fake.app())).make_url("/")),
              "experiment_metrics": {"metrics": [
                  {"name": "deploys", "kind": "count", "event": "deploy", "window_days": 2},
                  {"name": "activated", "kind": "conversion", "event": "app.activated", "window_days": 1},
                  {"name": "failures", "kind": "ratio", "numerator": "deploy.failed", "denominator": "deploy"}],
                  "cuped": {"pre_period_days": 2}}}
    bodies = []
    for backend in ({"events.path": str(write_file(tmp_path / "events.jsonl", events))},
                    {"events.kind": "clickhouse", "events.url": clickhouse_url, "events.user": USER,
                     "events.password": PASSWORD, "events.table": create_table(engine, events)}):
        client, _ = await make_client(**common, **backend)
        body = await (await client.get("/api/v1/experiment-results")).json()
        assert body["sources"]["events"]["status"] == "up"
        bodies.append(body["experiments"])
    on_file, on_clickhouse = bodies
    assert on_clickhouse == on_file
    assert {e["experiment_id"] for e in on_file if "metrics" in e} >= {KNOWN["id"], NAMED["id"], "events-only"}
