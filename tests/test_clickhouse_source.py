"""The ClickHouse events backend over HTTP on loopback, its SQL run by the real ClickHouse engine.

The server is :class:`devtools.clickhouse.ClickHouseHttpFront` (ClickHouse's HTTP interface in
front of the engine in-process, chdb); the client is the service's own. On the same event logs
(seeded and generated, with ties, repeats, events at the window and range edges and after now,
hostile event names, properties with hostile values and ties within a second), every funnel,
segment, user-count, daily-user, retention, lifecycle and stickiness number from ClickHouse equals
the file backend's, for everyone and for random selections (filters and breakdowns), value by
value. Values never enter the SQL text; the Plausible ``events_v2`` preset reads a table shaped
like Plausible's; failures are SourceErrors that never show the password.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.clickhouse import PASSWORD, USER, ChdbEngine, ClickHouseHttpFront
from exporter.analysis.adoption import FeatureUsers
from exporter.analysis.breakdowns import EVERYONE, NONE, OTHER, Selection
from exporter.analysis.funnels import FunnelDefinition, FunnelStep, progress_report
from exporter.analysis.retention import MODES, RetentionQuery, interval_grid, lifecycle_report, retention_report
from exporter.analysis.segments import UserActivity, segments_report
from exporter.analysis.usage import UserCounts
from exporter.config import EventsConfig
from exporter.errors import SourceError
from exporter.events.clickhouse_source import ClickHouseEventsSource
from exporter.events.file_source import EventsFileSource
from exporter.health import HealthRegistry
from exporter.secrets import Secret
from tests.conftest import FakeClock
from tests.fakes.events import AnyEvent, Event, PropertyEvent, write_events
from tests.tools import require_chdb

NOW = 1_780_000_000  # 2026-05-28T20:26:40Z
DAY = 86_400
HOSTILE = ("it's'); DROP TABLE events; --", "back\\slash\\", "tab\tnew\nline", "{step_0:String}", "a+b&c=d%20#")
NAMES = ("signup", "configure", "deploy", "noise", *HOSTILE)
SUFFIX = itertools.count()
# Property values: plain ones, the reserved texts, an empty one (absent), and hostile ones.
TEAMS = ("payments", "search", NONE, OTHER, "", "it's'); DROP TABLE events; --", "50% off_", "\u00e9quipe \u2713",
         "{filter_0:Array(String)}", "tab\tnew\nline", "back\\slash\\")
ROLES = ("admin", "dev", "viewer")
# Every property the file backend loads; "plan" is carried by no event: everyone's is (none).
PROPERTIES = {"team": TEAMS, "role": ROLES, "plan": ("free",)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse"))


@pytest.fixture
def front(engine) -> ClickHouseHttpFront:
    return ClickHouseHttpFront(engine)


@pytest.fixture
async def server(aiohttp_server, front):
    return await aiohttp_server(front.app())


def clickhouse_source(server, **settings) -> tuple[ClickHouseEventsSource, HealthRegistry]:
    health = HealthRegistry(FakeClock(NOW))
    health.register("events")
    config = EventsConfig(kind="clickhouse", url=str(server.make_url("/")), user=USER, password=Secret(PASSWORD),
                          **settings)
    return ClickHouseEventsSource(config, health), health


class BothBackends:
    """The same events in a file (file backend) and in a ClickHouse table (ClickHouse backend)."""

    def __init__(self, engine: ChdbEngine, server, events: Sequence[AnyEvent], directory: Path) -> None:
        table = f"events_{next(SUFFIX)}"
        engine.create_events_table(f"default.{table}", events)
        health = HealthRegistry(FakeClock(NOW))
        health.register("events")
        path = write_events(directory / f"{table}.jsonl", events)
        self.file = EventsFileSource(EventsConfig(path=str(path)), health, clock=FakeClock(NOW),
                                     properties=list(PROPERTIES))
        self.clickhouse, _ = clickhouse_source(server, table=table)

    async def both(self, question: str, *args, **kwargs):
        """``(file answer, ClickHouse answer)`` to the same EventsBackend question."""
        return (await getattr(self.file, question)(*args, **kwargs),
                await getattr(self.clickhouse, question)(*args, **kwargs))

    async def close(self) -> None:
        await self.clickhouse.close()


def as_multiset(values: np.ndarray) -> list:
    return sorted(values.tolist())


def measures(activity: UserActivity) -> list[tuple]:
    """Every user's measures, sorted (the backends list users in different orders)."""
    gap = np.where(np.isnan(activity.gap), -1.0, activity.gap)
    columns = (activity.l28, activity.l28_prev, activity.recency, activity.breadth, activity.age, gap)
    return sorted(zip(*(column.tolist() for column in columns), strict=True))


def per_value(on_file, on_clickhouse) -> dict[str, tuple]:
    """Per-user answers (funnel entrants, segment users) of both backends, side by side per
    breakdown value text (the backends code values differently); one entry, ``""``, without a
    breakdown. Values no user has on either side are left out."""
    assert (on_file.groups is None) == (on_clickhouse.groups is None)
    if on_file.groups is None:
        return {"": (on_file, on_clickhouse)}

    def split(answer) -> dict:
        parts = answer.split(answer.groups, len(answer.values))
        return {value: part for code, (value, part) in enumerate(zip(answer.values, parts))
                if np.any(answer.groups == code)}

    file_parts, clickhouse_parts = split(on_file), split(on_clickhouse)
    assert set(clickhouse_parts) == set(file_parts)
    return {value: (file_parts[value], clickhouse_parts[value]) for value in file_parts}


def counts_per_value(counts, fields: Sequence[str]) -> dict[str, list]:
    """A count answer's numbers per breakdown value text (``""`` without a breakdown), leaving out
    the values without any count (on which the backends may differ)."""
    values = counts.values or ("",)
    assert all(getattr(counts, name).shape[0] == len(values) for name in fields)
    numbers = {}
    for code, value in enumerate(values):
        found = [getattr(counts, name)[code].tolist() for name in fields]
        if any(np.any(part) for part in found):
            assert value not in numbers  # a text may be listed twice (an event's "(none)"), counted once
            numbers[value] = found
    return numbers


RETENTION_FIELDS = ("retained", "users")
LIFECYCLE_FIELDS = ("new", "returning", "resurrecting", "dormant", "users")
STICKINESS_FIELDS = ("daily", "weekly", "monthly")


async def assert_same_funnel(backends: BothBackends, funnel: FunnelDefinition, range_start: int,
                             range_end: int, selection: Selection = EVERYONE) -> None:
    on_file, on_clickhouse = await backends.both("funnel_reach", funnel, range_start=range_start, range_end=range_end,
                                                 selection=selection)
    for value, (file_part, clickhouse_part) in per_value(on_file, on_clickhouse).items():
        assert as_multiset(clickhouse_part.levels) == as_multiset(file_part.levels), value
        for step in range(len(funnel.steps) - 1):
            assert as_multiset(clickhouse_part.transition_seconds(step)) == \
                as_multiset(file_part.transition_seconds(step)), value
        assert as_multiset(clickhouse_part.completion_seconds()) == as_multiset(file_part.completion_seconds()), value
    # Every number of the report, exactly: counts, rates, intervals, mean / median / p90 times.
    assert progress_report(funnel, on_clickhouse, range_end=range_end, now=NOW) == \
        progress_report(funnel, on_file, range_end=range_end, now=NOW)


async def assert_same_segments(backends: BothBackends, meaningful: Collection[str] | None,
                               features: Mapping[str, str] | None, selection: Selection = EVERYONE) -> None:
    on_file, on_clickhouse = await backends.both("segment_activity", now=NOW, meaningful_events=meaningful,
                                                 feature_events=features, selection=selection)
    for value, (file_part, clickhouse_part) in per_value(on_file, on_clickhouse).items():
        assert measures(clickhouse_part) == measures(file_part), value
    options = {"now": NOW, "meaningful_events": meaningful, "feature_events": features}
    assert segments_report(on_clickhouse, **options) == segments_report(on_file, **options)


async def assert_same_counts(backends: BothBackends, meaningful: Collection[str] | None,
                             selection: Selection = EVERYONE) -> None:
    for start, end in ((NOW - 7 * DAY, NOW + 1), (NOW - DAY // 2, NOW - 3_600), (NOW - 90 * DAY, NOW + 1)):
        on_file, on_clickhouse = await backends.both("user_counts", start=start, end=end, meaningful_events=meaningful,
                                                     selection=selection)
        assert on_clickhouse == on_file  # by_value too: every value with users, (total, active)
    names = [*NAMES[:3], HOSTILE[0], "never-seen"]
    on_file, on_clickhouse = await backends.both("feature_users", names, start=NOW - 30 * DAY, end=NOW + 1,
                                                 selection=selection)
    assert on_clickhouse == on_file
    on_file, on_clickhouse = await backends.both("feature_dates", names, end=NOW + 1)
    assert on_clickhouse == on_file and on_file["never-seen"] is None
    midnight = NOW // DAY * DAY
    for start, end in ((midnight - 90 * DAY, NOW + 1), (midnight - 3 * DAY, midnight - DAY), (midnight, NOW - 3_600)):
        on_file, on_clickhouse = await backends.both("daily_users", names, start=start, end=end,
                                                     meaningful_events=meaningful)
        assert on_clickhouse == on_file


async def assert_same_retention(backends: BothBackends, start_event: str | None, return_event: str | None,
                                selection: Selection = EVERYONE) -> None:
    """Retention, lifecycle and stickiness: every count of both backends per value, and the reports."""
    for interval, days in (("day", 30), ("week", 63)):
        grid = interval_grid(interval, range_start=NOW - days * DAY, range_end=NOW + 1, now=NOW)
        for mode in MODES:
            query = RetentionQuery(mode, start_event, return_event)
            on_file, on_clickhouse = await backends.both("retention_counts", query, grid, selection)
            assert counts_per_value(on_clickhouse, RETENTION_FIELDS) == counts_per_value(on_file, RETENTION_FIELDS)
            assert (on_clickhouse.start_event_seen, on_clickhouse.return_event_seen) == \
                (on_file.start_event_seen, on_file.return_event_seen)
            if selection.breakdown is None:
                assert retention_report(query, grid, on_clickhouse) == retention_report(query, grid, on_file)
        lifecycle = await backends.both("lifecycle_counts", grid, selection)
        stickiness = await backends.both("stickiness_counts", now=NOW, selection=selection)
        (file_counts, clickhouse_counts), (file_days, clickhouse_days) = lifecycle, stickiness
        assert counts_per_value(clickhouse_counts, LIFECYCLE_FIELDS) == counts_per_value(file_counts, LIFECYCLE_FIELDS)
        assert counts_per_value(clickhouse_days, STICKINESS_FIELDS) == counts_per_value(file_days, STICKINESS_FIELDS)
        assert clickhouse_days.last_day == file_days.last_day
        if selection.breakdown is None:
            assert lifecycle_report(grid, clickhouse_counts, clickhouse_days) == \
                lifecycle_report(grid, file_counts, file_days)


async def assert_same_everything(backends: BothBackends, selection: Selection) -> None:
    """Every question under ``selection``, with one set of options each."""
    funnel = FunnelDefinition("f", "", (FunnelStep("a", "signup"), FunnelStep("b", "deploy")), 7 * DAY)
    await assert_same_funnel(backends, funnel, NOW - 30 * DAY, NOW + 1, selection)
    await assert_same_segments(backends, None, {"deploy": "Deploy", "configure": "Configure"}, selection)
    await assert_same_counts(backends, {"configure", "deploy"}, selection)
    await assert_same_retention(backends, "signup", None, selection)


def seeded_properties(rng: random.Random) -> tuple[tuple[str, str], ...]:
    """Some events carry a team, fewer a role."""
    chances = {"team": 0.3, "role": 0.15}
    return tuple((name, rng.choice(PROPERTIES[name])) for name, chance in chances.items() if rng.random() < chance)


def seeded_log(seed: int) -> list[PropertyEvent]:
    """Users around a home day; coarse clocks (whole minutes, hours, days) make ties common;
    repeated events; a few events after now; properties, some events of one second carrying
    different values of one property."""
    rng = random.Random(seed)
    events = []
    for user in range(rng.randint(5, 40)):
        home = NOW - rng.randint(-1, 95) * DAY
        for _ in range(rng.randint(1, 30)):
            grain = rng.choice([1, 60, 3_600, DAY])
            t = home + grain * rng.randint(-3 * DAY // grain, 3 * DAY // grain)
            name = rng.choice(NAMES[:4]) if rng.random() < 0.8 else rng.choice(NAMES)
            events.append(PropertyEvent(f"user-{user}", name, t, seeded_properties(rng)))
            if rng.random() < 0.15:
                events.append(events[-1])  # the same event twice
            if rng.random() < 0.1:  # the same second, another team: the greatest text wins
                events.append(events[-1]._replace(properties=(("team", rng.choice(TEAMS)),)))
    return events


def random_selection(rng: random.Random) -> Selection:
    """0 to 2 filters (values, (none), a value nobody has), a breakdown or not."""
    filters = tuple((name, tuple(rng.sample([*PROPERTIES[name], NONE, "nobody's"], rng.randint(1, 3))))
                    for name in rng.sample(list(PROPERTIES), rng.randint(0, 2)))
    return Selection(filters, rng.choice([None, *PROPERTIES]))


def seeded_funnel(rng: random.Random) -> FunnelDefinition:
    steps = tuple(FunnelStep(f"step{k}", rng.choice(NAMES[:3] + HOSTILE[:1])) for k in range(rng.randint(1, 4)))
    window = rng.choice([60, 3_600, DAY, 7 * DAY])
    step_windows = None
    if rng.random() < 0.4:
        step_windows = tuple(rng.choice([None, 30, 7_200, DAY]) for _ in steps[1:])
    return FunnelDefinition("seeded", "", steps, window, step_windows)


@pytest.mark.slow  # hundreds of statements on the engine: with the next test, most of this module's time
@pytest.mark.parametrize("seed", range(4))
async def test_every_number_equals_the_file_backend_on_seeded_logs(engine, server, tmp_path, seed):
    rng = random.Random(seed)
    backends = BothBackends(engine, server, seeded_log(seed), tmp_path)
    try:
        for funnel in (seeded_funnel(rng), seeded_funnel(rng)):
            await assert_same_funnel(backends, funnel, NOW - 30 * DAY, NOW + 1)
            await assert_same_funnel(backends, funnel, NOW - 60 * DAY, NOW - 20 * DAY)
        await assert_same_segments(backends, None, None)
        await assert_same_segments(backends, {"signup", "deploy", HOSTILE[1]},
                                   {"deploy": "Deploy", "configure": "Configure", HOSTILE[0]: "Deploy"})
        await assert_same_counts(backends, None)
        await assert_same_counts(backends, {"configure", HOSTILE[2]})
        await assert_same_retention(backends, None, None)
        await assert_same_retention(backends, "signup", HOSTILE[0])
        for selection in (Selection(breakdown="team"), Selection((("team", (TEAMS[0], NONE)),), "role"),
                          random_selection(rng), random_selection(rng)):
            await assert_same_everything(backends, selection)
    finally:
        await backends.close()


# Times on a coarse grid around now and the range edges, so ties, exact window ends and entries
# at the range's first and last second are frequent.
moments = st.builds(lambda day, second: NOW + day * DAY + second,
                    st.integers(-65, 1), st.sampled_from([-1, 0, 1, 2, 60, 61, 3_600, 43_200]))
# A few values per property, so that filters hit and one second often holds several values.
property_pairs = st.lists(st.one_of(st.tuples(st.just("team"), st.sampled_from(TEAMS[:6])),
                                    st.tuples(st.just("role"), st.sampled_from(ROLES[:2]))),
                          max_size=2, unique_by=lambda pair: pair[0]).map(tuple)
event_logs = st.lists(st.builds(PropertyEvent, st.sampled_from(["u1", "u2", "u3", "u'4"]),
                                st.sampled_from(NAMES[:4] + HOSTILE[:1]), moments, property_pairs),
                      min_size=1, max_size=50)
selections = st.builds(
    Selection,
    st.lists(st.one_of(
        st.tuples(st.just("team"), st.lists(st.sampled_from([*TEAMS[:6], "nobody's"]), min_size=1, max_size=3)),
        st.tuples(st.just("role"), st.lists(st.sampled_from([*ROLES[:2], NONE]), min_size=1, max_size=2)),
    ).map(lambda pair: (pair[0], tuple(pair[1]))), max_size=2).map(tuple),
    st.none() | st.sampled_from(["team", "role"]))
funnels = st.builds(
    lambda steps, window, windows: FunnelDefinition(
        "generated", "", tuple(FunnelStep(f"s{k}", e) for k, e in enumerate(steps)), window,
        None if windows is None else tuple(windows[:len(steps) - 1])),
    st.lists(st.sampled_from(NAMES[:3]), min_size=1, max_size=4),
    st.sampled_from([1, 60, 3_600, DAY]),
    st.none() | st.lists(st.sampled_from([None, 1, 60, 7_200]), min_size=3, max_size=3))


@pytest.mark.slow  # ten generated logs, each compared like the seeded ones
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_logs, funnel=funnels, meaningful=st.none() | st.just(frozenset({"signup", "deploy"})),
       selection=selections)
async def test_every_number_equals_the_file_backend_on_generated_logs(engine, server, events, funnel, meaningful,
                                                                      selection):
    with tempfile.TemporaryDirectory() as directory:
        backends = BothBackends(engine, server, events, Path(directory))
        try:
            await assert_same_funnel(backends, funnel, NOW - 30 * DAY, NOW - DAY + 1, selection)
            await assert_same_segments(backends, meaningful, {"deploy": "Deploy", "configure": "Deploy"}, selection)
            on_file, on_clickhouse = await backends.both("user_counts", start=NOW - 7 * DAY, end=NOW + 1,
                                                         meaningful_events=meaningful, selection=selection)
            assert on_clickhouse == on_file
            on_file, on_clickhouse = await backends.both("daily_users", NAMES[:4], start=NOW // DAY * DAY - 65 * DAY,
                                                         end=NOW + 1, meaningful_events=meaningful)
            assert on_clickhouse == on_file
            on_file, on_clickhouse = await backends.both("feature_users", ["signup", "deploy"], start=NOW - 7 * DAY,
                                                         end=NOW + 1, selection=selection)
            assert on_clickhouse == on_file
            await assert_same_retention(backends, "signup", None, selection)
        finally:
            await backends.close()


async def test_fractional_timestamps_are_floored_like_the_file_loader(engine, server):
    """A DateTime64 column: an event at .999 of a second belongs to that second, at range edges too."""
    start = NOW - DAY
    engine.create_events_table("default.events_ms", [
        Event("a", "signup", start - 0.001),  # just before the range
        Event("b", "signup", start + 0.999), Event("b", "deploy", start + 60.999),  # floored: 60 s later
        Event("c", "signup", NOW + 0.5),  # second NOW: the last one of [start, NOW + 1)
    ], timestamp_type="DateTime64(3)")
    source, _ = clickhouse_source(server, table="events_ms")
    funnel = FunnelDefinition("f", "", (FunnelStep("a", "signup"), FunnelStep("b", "deploy")), 60)
    try:
        reach = await source.funnel_reach(funnel, range_start=start, range_end=NOW + 1)
        assert as_multiset(reach.levels) == [1, 2]
        assert reach.transition_seconds(0).tolist() == [60]  # exactly the window: inclusive
        counts = await source.user_counts(start=start, end=NOW + 1)
        assert counts.active == 2 and counts.total == 3
    finally:
        await source.close()


async def test_every_value_travels_as_a_query_parameter(engine, server, front):
    """Hostile event names and properties never enter the SQL, and match events of that exact name."""
    trap = HOSTILE[0]
    events = [Event("u1", trap, NOW - 100), Event("u1", "deploy", NOW - 50), Event("u2", "deploy'", NOW - 40),
              Event("u3", "back\\slash\\", NOW - 30), Event("u4", "back\\\\slash\\\\", NOW - 20),
              Event("u5", "{step_0:String}", NOW - 10)]  # a name that looks like a placeholder
    engine.create_events_table("default.events", events)
    source, _ = clickhouse_source(server)
    funnel = FunnelDefinition("f", "", (FunnelStep("trap", trap), FunnelStep("deploy", "deploy")), DAY)
    try:
        reach = await source.funnel_reach(funnel, range_start=NOW - DAY, range_end=NOW + 1)
        users = await source.feature_users([*HOSTILE, "deploy", "deploy'", "back\\\\slash\\\\"],
                                           start=NOW - DAY, end=NOW + 1)
        counts = await source.user_counts(start=NOW - DAY, end=NOW + 1, meaningful_events=[trap, "x') OR 1=1 --"])
    finally:
        await source.close()
    assert reach.levels.tolist() == [2]  # the trap is an event name like any other
    assert users.users == {trap: 1, "back\\slash\\": 1, "tab\tnew\nline": 0, "{step_0:String}": 1, "a+b&c=d%20#": 0,
                     "deploy": 1, "deploy'": 1, "back\\\\slash\\\\": 1}
    assert counts.active == 1 and counts.total == 5
    assert json.loads(engine.execute("SELECT count() AS n FROM default.events FORMAT JSONEachRow"))["n"] == 6
    for request in front.requests:
        for value in ("it's", "DROP TABLE", "back\\slash", "tab\tnew", "a+b&c", "x') OR 1=1", "deploy'"):
            assert value not in request.sql
    sent = [value for request in front.requests for name, value in request.url_parameters.items()
            if name.startswith("param_")]
    assert "it's'); DROP TABLE events; --" in sent  # the trap itself, as a String parameter
    assert any(trap.replace("'", "\\'") in value for value in sent)  # and inside an Array(String) one


TRAP_TEAM = "b'); DROP TABLE events; --"
TRAP_ROLE = "r\u00f4le'] OR 1=1 --"  # a property name is a value too


def team_and_role_events() -> list[PropertyEvent]:
    """Users whose values exercise every rule: the latest carrying event wins; an event's '' or
    "(none)" does not carry; of one second, the greatest text wins whatever the order; events
    from the end on do not count."""
    def event(user: str, name: str, ago: int, **properties: str) -> PropertyEvent:
        return PropertyEvent(user, name, NOW - ago, tuple((TRAP_ROLE if key == "role" else key, value)
                                                          for key, value in properties.items()))

    return [
        event("u1", "signup", 300, team="search"),
        event("u1", "deploy", 100, team="payments", role="{no_value:String}"),  # looks like a placeholder
        event("u1", "signup", 50, team=NONE), event("u1", "deploy", 40, team=""),
        event("u2", "signup", 30, team="a%"), event("u2", "deploy", 30, team=TRAP_TEAM),
        event("u3", "signup", 30, team=TRAP_TEAM), event("u3", "deploy", 30, team="a%"),
        event("u4", "signup", 20, team="x"), event("u4", "deploy", -5, team="payments"),  # after now
        event("u5", "signup", 10), event("u5", "deploy", 5, role="dev"),
    ]


async def test_selection_values_and_property_names_travel_as_query_parameters(engine, server, front):
    engine.create_events_table("default.events", team_and_role_events())
    source, _ = clickhouse_source(server)
    selection = Selection((("team", ("payments", TRAP_TEAM, NONE, "x') OR 1=1 --")),), TRAP_ROLE)
    funnel = FunnelDefinition("f", "", (FunnelStep("signup", "signup"), FunnelStep("deploy", "deploy")), DAY)
    try:
        counts = await source.user_counts(start=NOW - DAY, end=NOW + 1, selection=selection)
        reach = await source.funnel_reach(funnel, range_start=NOW - DAY, range_end=NOW + 1, selection=selection)
        activity = await source.segment_activity(now=NOW, selection=selection)
        users = await source.feature_users(["deploy"], start=NOW - DAY, end=NOW + 1, selection=selection)
        teams = await source.user_counts(start=NOW - DAY, end=NOW + 1, selection=Selection(breakdown="team"))
    finally:
        await source.close()
    # u1 payments, u2 and u3 the trap (tie), u4 x (its later payments is after now), u5 (none)
    assert teams.by_value == {"payments": (1, 1), TRAP_TEAM: (2, 2), "x": (1, 1), NONE: (1, 1)}
    assert counts == UserCounts(total=4, active=4, by_value={"{no_value:String}": (1, 1), NONE: (2, 2), "dev": (1, 1)})
    assert sorted(zip([reach.values[code] for code in reach.groups], reach.levels.tolist())) == \
        [(NONE, 1), (NONE, 1), ("dev", 2), ("{no_value:String}", 2)]  # u2, u3: both steps in one second
    assert sorted(activity.values[code] for code in activity.groups) == [NONE, NONE, "dev", "{no_value:String}"]
    assert users == FeatureUsers({"deploy": 4}, {NONE: {"deploy": 2}, "{no_value:String}": {"deploy": 1},
                                                 "dev": {"deploy": 1}})
    for request in front.requests:
        for value in ("DROP", "r\u00f4le", "OR 1=1", "payments", "(none)"):
            assert value not in request.sql
    sent = {value for request in front.requests for name, value in request.url_parameters.items()
            if name.startswith("param_")}
    assert TRAP_ROLE.replace("'", "\\'") in sent or TRAP_ROLE in sent


async def test_requests_are_read_only_bounded_and_authenticated_by_headers(engine, server, front):
    engine.create_events_table("default.events", [Event("u1", "deploy", NOW - 10)])
    source, _ = clickhouse_source(server, query_timeout_seconds=4.5)
    try:
        await source.user_counts(start=NOW - DAY, end=NOW + 1)
    finally:
        await source.close()
    (request,) = front.requests
    assert request.url_parameters["readonly"] == "1"
    assert request.url_parameters["max_execution_time"] == "4.5"
    assert request.url_parameters["wait_end_of_query"] == "1"
    assert request.headers["X-ClickHouse-User"] == USER and request.headers["X-ClickHouse-Key"] == PASSWORD
    assert PASSWORD not in json.dumps(request.url_parameters)
    assert request.sql.rstrip().endswith("FORMAT JSONEachRow")
    assert "`default`.`events`" in request.sql


async def test_readonly_is_enforced_by_the_engine(engine, server):
    """readonly=1 is a setting the server applies, not a promise: even a write sent with it fails."""
    engine.create_events_table("default.events", [Event("u1", "deploy", NOW - 10)])
    source, _ = clickhouse_source(server)
    try:
        with pytest.raises(SourceError, match="readonly|READONLY"):
            await source.request("POST", "/", params={"readonly": "1"}, data=b"DROP TABLE default.events")
    finally:
        await source.close()
    assert json.loads(engine.execute("SELECT count() AS n FROM default.events FORMAT JSONEachRow"))["n"] == 1


async def test_wrong_password_is_an_error_that_never_shows_it(engine, server):
    engine.create_events_table("default.events", [Event("u1", "deploy", NOW - 10)])
    health = HealthRegistry(FakeClock(NOW))
    health.register("events")
    wrong = "wr0ng-'secret'"
    config = EventsConfig(kind="clickhouse", url=str(server.make_url("/")), user=USER, password=Secret(wrong))
    source = ClickHouseEventsSource(config, health)
    try:
        with pytest.raises(SourceError) as raised:
            await source.user_counts(start=NOW - DAY, end=NOW + 1)
    finally:
        await source.close()
    assert raised.value.code == "forbidden"
    assert "authentication failed" in str(raised.value) and "events.password" in str(raised.value)
    state = health.sources["events"]
    assert state.status == "down" and wrong not in state.last_error and PASSWORD not in state.last_error


async def test_an_unknown_table_is_a_clear_error(engine, server):
    source, health = clickhouse_source(server, table="no_such_table")
    try:
        with pytest.raises(SourceError) as raised:
            await source.segment_activity(now=NOW)
    finally:
        await source.close()
    assert raised.value.code == "not_found"
    assert "ClickHouse error 60" in str(raised.value) and "no_such_table" in str(raised.value)
    assert health.sources["events"].requests["client_error"] == 1  # a 404 is not retried


async def test_a_slow_server_times_out_within_the_query_timeout(engine, server, front):
    engine.create_events_table("default.events", [Event("u1", "deploy", NOW - 10)])
    front.delay_seconds = 3.0
    source, health = clickhouse_source(server, query_timeout_seconds=0.3)
    try:
        with pytest.raises(SourceError) as raised:
            await source.user_counts(start=NOW - DAY, end=NOW + 1)
    finally:
        await source.close()
    assert raised.value.code == "timeout"
    assert health.sources["events"].requests["timeout"] == 1  # the deadline leaves no room to retry


# --- Plausible's events_v2 ------------------------------------------------------------------------

def plausible_row(t: int, name: str, *, path: str = "/", props: Mapping[str, str] = {}) -> dict:
    return {"timestamp": t, "name": name, "site_id": 1, "user_id": 99, "session_id": 7, "hostname": "idp.example",
            "pathname": path, "meta.key": list(props), "meta.value": list(props.values())}


async def test_the_plausible_events_v2_preset(engine, server, tmp_path):
    """Custom events by name, page views by path, the user from a custom property wherever it sits
    among the props; engagement events and events without the property are not events."""
    rows = [
        plausible_row(NOW - 5 * DAY, "pageview", path="/docs", props={"stable_id": "alice"}),
        plausible_row(NOW - 5 * DAY + 30, "engagement", path="/docs", props={"stable_id": "alice"}),
        plausible_row(NOW - 5 * DAY + 60, "Deploy Application", props={"team": "x", "stable_id": "alice"}),
        plausible_row(NOW - 4 * DAY, "pageview", path="/docs", props={"stable_id": "bob'); DROP TABLE x; --"}),
        plausible_row(NOW - 4 * DAY + 1, "Deploy Application", props={"stable_id": "bob'); DROP TABLE x; --"}),
        plausible_row(NOW - 3 * DAY, "Deploy Application", props={"team": "anonymous"}),  # no stable id
        plausible_row(NOW - 2 * DAY, "pageview", path="/", props={}),
        plausible_row(NOW - DAY, "pageview", path="/home", props={"stable_id": "carol", "stable": "x"}),
    ]
    expected = [Event("alice", "/docs", NOW - 5 * DAY), Event("alice", "Deploy Application", NOW - 5 * DAY + 60),
                Event("bob'); DROP TABLE x; --", "/docs", NOW - 4 * DAY),
                Event("bob'); DROP TABLE x; --", "Deploy Application", NOW - 4 * DAY + 1),
                Event("carol", "/home", NOW - DAY)]
    engine.create_plausible_events_v2("default.events_v2", rows)
    health = HealthRegistry(FakeClock(NOW))
    health.register("events")
    plausible, _ = clickhouse_source(server, preset="plausible_events_v2", user_id_property="stable_id")
    path = write_events(tmp_path / "expected.jsonl", expected)
    file = EventsFileSource(EventsConfig(path=str(path)), health, clock=FakeClock(NOW))
    funnel = FunnelDefinition("docs to deploy", "", (FunnelStep("docs", "/docs"),
                                                     FunnelStep("deploy", "Deploy Application")), DAY)
    try:
        reach = await plausible.funnel_reach(funnel, range_start=NOW - 7 * DAY, range_end=NOW + 1)
        assert as_multiset(reach.levels) == [2, 2] and as_multiset(reach.transition_seconds(0)) == [1, 60]
        activity = await plausible.segment_activity(now=NOW)
        assert measures(activity) == measures(await file.segment_activity(now=NOW))
        assert await plausible.user_counts(start=NOW - 7 * DAY, end=NOW + 1) == \
            await file.user_counts(start=NOW - 7 * DAY, end=NOW + 1)
        assert await plausible.feature_users(["/docs", "Deploy Application", "engagement"], start=NOW - 7 * DAY,
                                             end=NOW + 1) == FeatureUsers({"/docs": 2, "Deploy Application": 2,
                                                                           "engagement": 0})
    finally:
        await plausible.close()
    hostile, _ = clickhouse_source(server, preset="plausible_events_v2",
                                   user_id_property="stable_id'] OR 1=1); DROP TABLE events_v2; --")
    try:  # a property name is a value: no event carries this one
        assert await hostile.user_counts(start=NOW - 7 * DAY, end=NOW + 1) == UserCounts(total=0, active=0)
    finally:
        await hostile.close()
    assert json.loads(engine.execute("SELECT count() AS n FROM default.events_v2 FORMAT JSONEachRow"))["n"] == 8
    assert plausible.details() | {"url": None} == {
        "kind": "clickhouse", "url": None, "table": "default.events_v2", "query_timeout_seconds": 8.0,
        "preset": "plausible_events_v2", "user_id_property": "stable_id"}


async def test_the_plausible_preset_reads_dimensions_from_custom_properties(engine, server, tmp_path):
    """A user's team from ``meta``, wherever it sits among the props; engagement events and events
    without a user are not events, so their teams do not count."""
    rows = [
        plausible_row(NOW - 5 * DAY, "pageview", path="/docs", props={"stable_id": "alice", "team": "web"}),
        plausible_row(NOW - 4 * DAY, "Deploy", props={"team": "payments", "stable_id": "alice"}),
        plausible_row(NOW - 3 * DAY, "engagement", props={"stable_id": "alice", "team": "engaged"}),
        plausible_row(NOW - 4 * DAY, "pageview", path="/docs", props={"stable_id": "bob", "team": "it's %"}),
        plausible_row(NOW - 4 * DAY + 60, "Deploy", props={"stable_id": "bob"}),
        plausible_row(NOW - 2 * DAY, "Deploy", props={"team": "anonymous"}),  # no user
        plausible_row(NOW - DAY, "pageview", path="/docs", props={"stable_id": "carol"}),
    ]
    expected = [
        PropertyEvent("alice", "/docs", NOW - 5 * DAY, (("team", "web"),)),
        PropertyEvent("alice", "Deploy", NOW - 4 * DAY, (("team", "payments"),)),
        PropertyEvent("bob", "/docs", NOW - 4 * DAY, (("team", "it's %"),)),
        PropertyEvent("bob", "Deploy", NOW - 4 * DAY + 60), PropertyEvent("carol", "/docs", NOW - DAY)]
    engine.create_plausible_events_v2("default.events_v2", rows)
    health = HealthRegistry(FakeClock(NOW))
    health.register("events")
    plausible, _ = clickhouse_source(server, preset="plausible_events_v2", user_id_property="stable_id")
    path = write_events(tmp_path / "expected.jsonl", expected)
    file = EventsFileSource(EventsConfig(path=str(path)), health, clock=FakeClock(NOW), properties=["team"])
    funnel = FunnelDefinition("docs to deploy", "", (FunnelStep("docs", "/docs"), FunnelStep("deploy", "Deploy")), DAY)
    by_team = Selection(breakdown="team")
    try:
        counts = await plausible.user_counts(start=NOW - 7 * DAY, end=NOW + 1, selection=by_team)
        assert counts.by_value == {"payments": (1, 1), "it's %": (1, 1), NONE: (1, 1)}
        assert counts == await file.user_counts(start=NOW - 7 * DAY, end=NOW + 1, selection=by_team)
        options = {"range_start": NOW - 7 * DAY, "range_end": NOW + 1,
                   "selection": Selection((("team", ("payments", NONE)),), "team")}
        on_file = await file.funnel_reach(funnel, **options)
        on_plausible = await plausible.funnel_reach(funnel, **options)
        for value, (file_part, plausible_part) in per_value(on_file, on_plausible).items():
            assert as_multiset(plausible_part.levels) == as_multiset(file_part.levels), value
        assert sorted(on_plausible.values[code] for code in on_plausible.groups) == [NONE, "payments"]
    finally:
        await plausible.close()


# --- through the service --------------------------------------------------------------------------

FUNNEL = {"name": "trial", "window_seconds": 2 * DAY,
          "steps": [{"name": "signup", "event": "signup"}, {"name": "configure", "event": "configure"},
                    {"name": "deploy", "event": "deploy"}]}
FEATURES = [{"name": "Deploy", "event": "deploy"}, {"name": "Trap", "event": HOSTILE[0]}]


@pytest.fixture
def clock() -> FakeClock:  # also the service's clock in make_client
    return FakeClock(NOW)


async def test_the_service_serves_the_same_sections_from_either_backend(engine, server, make_client, tmp_path):
    events = seeded_log(11)
    engine.create_events_table("default.product_events", events)
    path = write_events(tmp_path / "events.jsonl", events)
    common = {"funnels": [FUNNEL], "features": FEATURES}
    on_file, _ = await make_client(**common, **{"events.path": str(path)})
    on_clickhouse, service = await make_client(**common, **{
        "events.kind": "clickhouse", "events.path": None, "events.url": str(server.make_url("/")),
        "events.table": "product_events", "events.user": USER, "events.password": PASSWORD})
    for url in ("/api/v1/funnel/trial?time_range=30d", "/api/v1/funnel/trial?time_range=90d",
                "/api/v1/user-segments", "/api/v1/usage-trends?time_range=7d", "/api/v1/feature-adoption",
                "/api/v1/forecast?series=active_users&horizon=30", "/api/v1/forecast?series=feature:Deploy",
                "/api/v1/forecast?series=funnel_entries:trial", "/api/v1/anomalies?time_range=90d"):
        file_body, clickhouse_body = [await (await client.get(url)).json() for client in (on_file, on_clickhouse)]
        for body in (file_body, clickhouse_body):
            del body["generated_at"], body["sources"]
        assert clickhouse_body == file_body, url
    health = await (await on_clickhouse.get("/health")).json()
    assert PASSWORD not in json.dumps(health)
    metrics = await on_clickhouse.get("/metrics")
    assert metrics.status == 200
    assert "analytics_events_malformed_lines" not in await metrics.text()  # a file's figure only
    assert service.source_details("events")["kind"] == "clickhouse"
