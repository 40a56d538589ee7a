"""Exposures and per-arm metric sums: the numpy kernel against a plain per-user reference, and the
ClickHouse SQL (run by the real engine, chdb) against the numpy kernel, on the same random logs.

Logs have coarse clocks so that events fall exactly on window and pre-period edges, users exposed
more than once, to two variants, to several experiments, exposures without a variant or without an
experiment, events after the end, hostile labels and event names, an experiment reported under
its id while events name it, and metric events that never occur.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.clickhouse import ChdbEngine, clickhouse_datetime
from devtools.exposure_reference import per_user_exposure_sums
from exporter.analysis.experiments.event_metrics import (
    CupedSettings,
    ExperimentMetricsSettings,
    ExperimentSums,
    ExposureSums,
    MeasureSums,
    MetricDefinition,
)
from exporter.events.clickhouse_exposures import exposure_sums_query
from exporter.events.clickhouse_queries import EventsTable
from exporter.events.log import EventLog
from exporter.events.log_exposures import MISSING, Exposures, exposure_sums, sorting_order
from tests.conftest import seeds
from tests.event_logs import make_log
from tests.tools import require_chdb

NOW = 1_780_000_000
DAY = 86_400
EXPOSURE = "experiment.exposure"
# The last one, a placeholder of the query's own, is a user id here (it must stay just a value).
HOSTILE = ("it's'); DROP TABLE events; --", "back\\slash\\", "tab\tnew\nline", "{event_0:String}")
EVENTS = ("deploy.done", "deploy.failed", "app.activated", HOSTILE[0])
EXPERIMENTS = ("exp-1", "Onboarding v2", HOSTILE[1], "exp-3")
KEYS = {"Onboarding v2": "exp-2"}  # events name this experiment; it is reported under its id
VARIANTS = ("control", "treatment", "alt", HOSTILE[2])
SUFFIX = itertools.count()

Event = tuple[str, str, int, dict[str, str]]  # user, event name, epoch seconds, properties


# --- the plain reference -----------------------------------------------------------------------------

def reference_sums(events: Sequence[Event], config: ExperimentMetricsSettings, *, end: int,
                   keys: Mapping[str, str]) -> ExposureSums:
    """User by user, event by event: the definitions of docs/experiment-metrics.md read literally."""
    exposures: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    history: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for user, name, t, properties in events:
        if t >= end:
            continue
        history[user].append((name, t))
        label = properties.get("experiment", "")
        key = keys.get(label, label)
        if name == config.exposure_event and key:
            exposures[key, user].append((t, properties.get("variant", "")))

    def count(user: str, name: str, start: int, stop: int) -> int:
        return sum(1 for event, t in history[user] if event == name and start <= t < stop)

    occurring = {name for user_events in history.values() for name, _ in user_events}
    return per_user_exposure_sums(exposures, count, config, occurring)


# --- the two backends ------------------------------------------------------------------------------

def exposures_of(log: EventLog, events: Sequence[Event], exposure_event: str) -> Exposures:
    """The exposure events as the kernel takes them: user codes of ``log``, property codes."""
    user_code = {name: code for code, name in enumerate(log.user_names)}
    chosen = [event for event in events if event[1] == exposure_event]
    experiments = sorted({p["experiment"] for *_, p in chosen if "experiment" in p})
    variants = sorted({p["variant"] for *_, p in chosen if "variant" in p})

    def codes(labels: list[str], key: str) -> np.ndarray:
        return np.array([labels.index(p[key]) if key in p else MISSING for *_, p in chosen], dtype=np.int64)

    return Exposures(users=np.array([user_code[user] for user, *_ in chosen], dtype=np.int32),
                     times=np.array([t for _, _, t, _ in chosen], dtype=np.int64),
                     experiments=codes(experiments, "experiment"), variants=codes(variants, "variant"),
                     experiment_labels=tuple(experiments), variant_labels=tuple(variants))


def on_file(events: Sequence[Event], config: ExperimentMetricsSettings, *, end: int,
            keys: Mapping[str, str]) -> ExposureSums:
    log = make_log([(user, name, t) for user, name, t, _ in events])
    return exposure_sums(log, exposures_of(log, events, config.exposure_event), config, end=end, experiment_keys=keys)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse-exposures"))


def on_clickhouse(engine: ChdbEngine, events: Sequence[Event], config: ExperimentMetricsSettings, *, end: int,
                  keys: Mapping[str, str], timestamp_type: str = "DateTime", fraction: float = 0.0) -> ExposureSums:
    """The same events in a ClickHouse table (``fraction`` of a second added to every time, which
    ClickHouse must floor as the file loader does), answered by the query on the engine."""
    table = f"default.exposures_{next(SUFFIX)}"
    engine.execute(f"CREATE TABLE {table} (user_id String, event LowCardinality(String), "
                   f"timestamp {timestamp_type}, props Map(String, String)) ENGINE = MergeTree "
                   "ORDER BY (event, timestamp)")
    engine.insert_rows(table, ({"user_id": user, "event": name, "timestamp": clickhouse_datetime(t + fraction),
                                "props": properties} for user, name, t, properties in events))
    query = exposure_sums_query(EventsTable.mapped("default", table.split(".")[1], user_id="user_id", event="event",
                                                   timestamp="timestamp"),
                                config, end=end, properties="props", experiment_keys=keys)
    for value in (*HOSTILE[:3], *keys):  # values travel as parameters, never in the SQL text
        assert value not in query.sql
    answer = engine.execute(f"{query.sql} FORMAT JSONEachRow", settings={"readonly": "1"},
                            params={name: parameter.text for name, parameter in query.parameters.items()})
    return query.read([json.loads(line) for line in answer.splitlines()])


# --- random logs -------------------------------------------------------------------------------------

def random_log(rng: random.Random) -> list[Event]:
    """Users exposed once or more (sometimes to another variant or experiment, sometimes without a
    variant or experiment), with metric events at whole days, hours and seconds from their exposures,
    so that window and pre-period edges are hit exactly; some events after the end."""
    events: list[Event] = []
    for number in range(rng.randint(1, 30)):
        user = f"user-{number}" if rng.random() < 0.9 else HOSTILE[3]
        anchors = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            t = NOW - rng.randint(-1, 20) * DAY + rng.choice([0, 1, 3_600, rng.randint(0, DAY)])
            properties = {"experiment": rng.choice(EXPERIMENTS), "variant": rng.choice(VARIANTS[:2] * 3 + VARIANTS)}
            if rng.random() < 0.1:
                del properties["variant"]
            if rng.random() < 0.05:
                properties["variant"] = ""
            if rng.random() < 0.05:
                del properties["experiment"]
            if rng.random() < 0.1:
                properties["team"] = "payments"  # another property, ignored
            events.append((user, EXPOSURE, t, properties))
            anchors.append(t)
        for _ in range(rng.randint(0, 25)):
            grain = rng.choice([1, 3_600, DAY])
            nudge = rng.choice([-1, 0, 0, 1])
            t = rng.choice(anchors) + grain * rng.randint(-4 * DAY // grain, 4 * DAY // grain) + nudge
            events.append((user, rng.choice(EVENTS), t, {}))
    return events


def random_settings(rng: random.Random) -> ExperimentMetricsSettings:
    names = [*EVENTS, "never.happens", EXPOSURE]
    metrics = []
    for number in range(rng.randint(0, 4)):
        kind = rng.choice(["conversion", "count", "ratio"])
        window = rng.randint(1, 3)
        if kind == "ratio":
            metrics.append(MetricDefinition(f"m{number}", kind, numerator=rng.choice(names),
                                            denominator=rng.choice(names), window_days=window))
        else:
            metrics.append(MetricDefinition(f"m{number}", kind, event=rng.choice(names), window_days=window))
    cuped = rng.choice([None, CupedSettings(1), CupedSettings(2)])
    return ExperimentMetricsSettings(metrics=tuple(metrics), cuped=cuped)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_numpy_kernel_equals_the_per_user_reference(seed):
    rng = random.Random(seed)
    events, config = random_log(rng), random_settings(rng)
    end = NOW - rng.choice([0, DAY, 5 * DAY])
    keys = rng.choice([{}, KEYS])
    assert on_file(events, config, end=end, keys=keys) == reference_sums(events, config, end=end, keys=keys)


@pytest.mark.parametrize("seed", seeds(12))
def test_clickhouse_equals_the_numpy_kernel(engine, seed):
    rng = random.Random(seed)
    events, config = random_log(rng), random_settings(rng)
    end = NOW - rng.choice([0, DAY, 5 * DAY])
    keys = KEYS if seed % 2 else {}
    expected = on_file(events, config, end=end, keys=keys)
    assert on_clickhouse(engine, events, config, end=end, keys=keys) == expected
    assert expected == reference_sums(events, config, end=end, keys=keys)


# --- the definitions, one case at a time ------------------------------------------------------------

CASES_CONFIG = ExperimentMetricsSettings(
    metrics=(MetricDefinition("deploys", "count", event="deploy.done", window_days=1),
             MetricDefinition("activated", "conversion", event="app.activated", window_days=1),
             MetricDefinition("failure_rate", "ratio", numerator="deploy.failed", denominator="deploy.done",
                              window_days=1),
             MetricDefinition("ghost", "count", event="never.happens")),
    cuped=CupedSettings(1))
T0 = NOW - 3 * DAY


def exposure(user: str, t: int, experiment: str | None = "exp-1", variant: str | None = "control") -> Event:
    properties = {"experiment": experiment, "variant": variant}
    properties = {name: value for name, value in properties.items() if value is not None}
    return (user, EXPOSURE, t, properties)


CASES = [
    # the first exposure anchors the window; a later one does not move it
    exposure("a", T0), exposure("a", T0 + 10 * 3_600),
    ("a", "deploy.done", T0, {}), ("a", "deploy.done", T0 + DAY - 1, {}), ("a", "deploy.done", T0 + DAY, {}),
    ("a", "deploy.done", T0 - DAY, {}), ("a", "deploy.done", T0 - 1, {}), ("a", "deploy.done", T0 - DAY - 1, {}),
    ("a", "deploy.failed", T0 + 5, {}), ("a", "app.activated", T0 - 5, {}),
    # exposed to two variants: excluded, counted
    exposure("b", T0), exposure("b", T0 + 60, variant="treatment"), ("b", "deploy.done", T0 + 1, {}),
    # an exposure without a variant is skipped and counted; the first one with a variant counts
    exposure("c", T0 - 60, variant=None), exposure("c", T0, variant="treatment"), exposure("c", T0 + 9, variant=""),
    ("c", "app.activated", T0 + 30, {}), ("c", "deploy.done", T0 - 30, {}), ("c", "deploy.done", T0 + 30, {}),
    # without an experiment: attributed to none
    exposure("d", T0, experiment=None), ("d", "deploy.done", T0, {}),
    # in a second experiment, under its name (reported under its id), and after the end
    exposure("a", T0 + 3_600, experiment="Onboarding v2", variant="treatment"), exposure("e", NOW, experiment="exp-9"),
    ("a", "deploy.done", NOW, {}),
]


@pytest.mark.parametrize("timestamp_type, fraction", [("DateTime", 0.0), ("DateTime64(3)", 0.999)])
def test_definitions_case_by_case(engine, timestamp_type, fraction):
    expected = ExposureSums(
        experiments={
            "exp-1": ExperimentSums(
                "exp-1", users={"control": 1, "treatment": 1},
                metrics={"deploys": {"control": MeasureSums(2, 2, 4, 4, 4), "treatment": MeasureSums(1, 1, 1, 1, 1)},
                         "activated": {"control": MeasureSums(0, 1, 0, 1, 0), "treatment": MeasureSums(1, 0, 1, 0, 0)},
                         "failure_rate": {"control": MeasureSums(1, 2, 1, 4, 2),
                                          "treatment": MeasureSums(0, 1, 0, 1, 0)},
                         "ghost": {"control": MeasureSums(0, 0, 0, 0, 0), "treatment": MeasureSums(0, 0, 0, 0, 0)}},
                excluded_multiple_variants=1, skipped_without_variant=2),
            "exp-2": ExperimentSums(
                "exp-2", users={"treatment": 1},
                # from T0 + 1 h: two deploys in the window (T0 + 1 d - 1 s, T0 + 1 d), two before (T0 - 1 s, T0)
                metrics={"deploys": {"treatment": MeasureSums(2, 2, 4, 4, 4)},
                         "activated": {"treatment": MeasureSums(0, 1, 0, 1, 0)},
                         "failure_rate": {"treatment": MeasureSums(0, 2, 0, 4, 0)},
                         "ghost": {"treatment": MeasureSums(0, 0, 0, 0, 0)}},
                excluded_multiple_variants=0, skipped_without_variant=0)},
        events_not_found=frozenset({"never.happens"}))
    assert reference_sums(CASES, CASES_CONFIG, end=NOW, keys=KEYS) == expected
    assert on_file(CASES, CASES_CONFIG, end=NOW, keys=KEYS) == expected
    assert on_clickhouse(engine, CASES, CASES_CONFIG, end=NOW, keys=KEYS, timestamp_type=timestamp_type,
                         fraction=fraction) == expected


def test_no_exposures_and_no_metrics(engine):
    events = [("a", "deploy.done", T0, {})]
    nothing = ExposureSums({}, frozenset({"never.happens", "app.activated", "deploy.failed"}))
    assert on_file(events, CASES_CONFIG, end=NOW, keys={}) == nothing
    assert on_clickhouse(engine, events, CASES_CONFIG, end=NOW, keys={}) == nothing
    bare = ExperimentMetricsSettings()
    only_exposures = [exposure("a", T0), exposure("b", T0, variant=None)]
    counted = ExposureSums({"exp-1": ExperimentSums("exp-1", {"control": 1}, {}, 0, 1)}, frozenset())
    assert on_file(only_exposures, bare, end=NOW, keys={}) == counted
    assert on_clickhouse(engine, only_exposures, bare, end=NOW, keys={}) == counted


def test_the_properties_column_is_an_identifier():
    table = EventsTable.mapped("default", "events", user_id="user_id", event="event", timestamp="timestamp")
    with pytest.raises(ValueError, match="not a ClickHouse name"):
        exposure_sums_query(table, CASES_CONFIG, end=NOW, properties="props]; DROP TABLE events; --")


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.integers(0, 50) | st.integers(0, 2**62), max_size=200))
def test_sorting_order_is_a_stable_argsort(keys):
    array = np.array(keys, dtype=np.int64)
    assert sorting_order(array).tolist() == np.argsort(array, kind="stable").tolist()


def test_exposures_decades_apart_are_measured_all_the_same():
    """Offsets from the first exposure no longer fit in 32 bits: the kernel keeps them in 64."""
    long_ago = T0 - 70 * 365 * DAY
    events = [exposure("a", long_ago), ("a", "deploy.done", long_ago + 5, {}), ("a", "deploy.done", long_ago - 5, {}),
              exposure("b", T0, variant="treatment"), ("b", "deploy.done", T0 + 5, {}), ("b", "deploy.done", T0, {})]
    assert on_file(events, CASES_CONFIG, end=NOW, keys={}) == reference_sums(events, CASES_CONFIG, end=NOW, keys={})
    assert on_file(events, CASES_CONFIG, end=NOW, keys={}).experiments["exp-1"].metrics["deploys"] == {
        "control": MeasureSums(1, 1, 1, 1, 1), "treatment": MeasureSums(2, 0, 4, 0, 0)}


def test_events_naming_many_experiments_and_variants_are_counted_all_the_same():
    """Hundreds of experiment and variant labels (a producer putting ids where names belong): the
    kernel finds the arms in use by sorting instead of a table over every (experiment, variant)."""
    rng = random.Random(5)
    events = []
    for number in range(400):
        user, t0 = f"user-{number}", T0 - rng.randint(0, 3) * DAY
        events.append(exposure(user, t0, experiment=f"exp-{number % 300}", variant=f"variant-{rng.randint(0, 299)}"))
        events += [(user, "deploy.done", t0 + rng.randint(-DAY, DAY), {}) for _ in range(rng.randint(0, 3))]
    found = on_file(events, CASES_CONFIG, end=NOW, keys={})
    assert found == reference_sums(events, CASES_CONFIG, end=NOW, keys={})
    assert len(found.experiments) == 300
