"""Retention cohorts: the interval grid, the report, and both backends against a plain per-user reference.

The file backend's bitset kernels (``exporter.events.log_retention``) and the ClickHouse SQL
(``exporter.events.clickhouse_retention``, run by the real engine in-process, chdb) must both give
the numbers of ``tests.retention_reference``, which reads the definitions user by user with sets
and ``datetime`` calendars, on generated logs with ties, repeats, users first seen long before the
range, events at day and ISO-week boundaries and events after now.
"""

from __future__ import annotations

import itertools
from datetime import date

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.clickhouse import ChdbEngine
from exporter.analysis.retention import (
    IntervalGrid,
    RangeTooShort,
    RetentionCounts,
    RetentionQuery,
    RetentionReport,
    interval_grid,
    retention_report,
)
from exporter.events.clickhouse_queries import EventsTable
from exporter.events.clickhouse_retention import retention_query
from exporter.events.log_retention import retention_counts
from exporter.results import json_schema, to_json
from tests.event_logs import make_log
from tests.fakes.events import Event
from tests.retention_reference import Calendar, midnight, reference_retention, run_on_chdb
from tests.tools import require_chdb

DAY = 86_400
TODAY = midnight(date(2026, 5, 28))  # a Thursday
MONDAY = midnight(date(2026, 5, 25))
NOW = TODAY + 12 * 3_600
TABLES = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse-retention"))


def calendar_range(days: int) -> tuple[int, int]:
    """The last ``days`` UTC calendar days, today included, as the service resolves ``<days>d``."""
    return TODAY - (days - 1) * DAY, TODAY + DAY


def grid_of(interval: str, days: int = 90, now: int = NOW) -> IntervalGrid:
    start, end = calendar_range(days)
    return interval_grid(interval, range_start=start, range_end=end, now=now)


def file_report(events, query: RetentionQuery, grid: IntervalGrid) -> RetentionReport:
    return retention_report(query, grid, retention_counts(make_log(events), query, grid))


def shape(report: RetentionReport) -> dict:
    """The report's numbers in the reference's shape."""
    return {"cohort_starts": [cohort.cohort_start for cohort in report.cohorts],
            "cohorts": [{"size": c.size, "retained": list(c.retained), "rates": list(c.rates),
                         "complete": list(c.complete)} for c in report.cohorts],
            "average_rates": list(report.average_rates)}


# --- the intervals ----------------------------------------------------------------------------

def test_weeks_are_iso_weeks_from_monday_midnight_utc():
    grid = grid_of("week", 30)
    assert grid.starts_iso()[-1] == "2026-05-25T00:00:00Z"  # this week's Monday
    assert grid.starts_iso()[0] == "2026-05-04T00:00:00Z"  # 30 days back is Wed 29 April: its week starts before
    assert grid.count == 4 and grid.complete == 3  # this week is in progress


@pytest.mark.parametrize("now, complete", [(TODAY, 89), (TODAY - 1, 88), (TODAY + DAY, 90), (TODAY + 5 * DAY, 90)])
def test_an_interval_is_complete_once_it_has_ended_by_now_and_by_the_range_end(now, complete):
    assert grid_of("day", 90, now=now).complete == complete


@settings(max_examples=200, deadline=None)
@given(interval=st.sampled_from(["day", "week"]), start=st.integers(TODAY - 100 * DAY, TODAY),
       length=st.integers(7 * DAY, 95 * DAY), now=st.integers(TODAY - 100 * DAY, TODAY + 100 * DAY))
def test_the_grid_lists_the_intervals_starting_in_the_range(interval, start, length, now):
    grid = interval_grid(interval, range_start=start, range_end=start + length, now=now)
    calendar = Calendar.of(interval, start, start + length, now)
    assert grid.starts_iso() == calendar.iso()
    assert [grid.is_complete(position) for position in range(grid.count)] == calendar.complete


@pytest.mark.parametrize("interval, seconds", [("week", 24 * 3_600), ("week", 7 * DAY - 1), ("day", 6 * 3_600)])
def test_a_range_shorter_than_one_interval_is_refused(interval, seconds):
    with pytest.raises(RangeTooShort, match=f"shorter than one {interval}"):
        interval_grid(interval, range_start=NOW - seconds, range_end=NOW, now=NOW)


def test_a_rolling_day_range_holds_exactly_one_day():
    grid = interval_grid("day", range_start=NOW - DAY, range_end=NOW, now=NOW)
    assert grid.starts_iso() == ["2026-05-28T00:00:00Z"] and grid.complete == 0


@pytest.mark.parametrize("make, message", [
    (lambda: grid_of("month"), "'month' is not a valid interval; valid: day, week"),
    (lambda: RetentionQuery(mode="weekly"), "'weekly' is not a valid mode; valid: first_time, recurring"),
])
def test_unknown_interval_or_mode_names_the_valid_values(make, message):
    with pytest.raises(ValueError) as raised:
        make()
    assert str(raised.value) == message


# --- semantics, on small logs -------------------------------------------------------------------

def test_a_cohort_is_the_first_ever_start_event_not_the_first_in_the_range():
    """An old user active every week of the range is in no first_time cohort (PostHog's semantics),
    but in every recurring one."""
    old = [("old", "use", MONDAY - k * 7 * DAY) for k in range(20)]
    new = [("new", "use", MONDAY - 14 * DAY + 5), ("new", "use", MONDAY - 7 * DAY)]
    grid = grid_of("week", 30)
    first_time = file_report(old + new, RetentionQuery(), grid)
    assert [c.size for c in first_time.cohorts] == [0, 1, 0, 0]
    assert first_time.cohorts[1].retained == (1, 1, 0)
    recurring = file_report(old + new, RetentionQuery(mode="recurring"), grid)
    assert [c.size for c in recurring.cohorts] == [1, 2, 2, 1]


def test_a_week_starts_on_monday_at_midnight():
    """Sunday 23:59:59 is the week before; Monday 00:00:00 the week of that Monday."""
    events = [("a", "signup", MONDAY - 7 * DAY), ("a", "use", MONDAY - 1),
              ("b", "signup", MONDAY - 7 * DAY), ("b", "use", MONDAY)]
    report = file_report(events, RetentionQuery(start_event="signup", return_event="use"), grid_of("week", 30))
    assert report.cohorts[2].cohort_start == "2026-05-18T00:00:00Z"
    assert report.cohorts[2].retained == (2, 1)


def test_period_zero_is_the_cohort_itself_and_later_periods_need_the_return_event_in_exactly_that_interval():
    events = [("a", "signup", TODAY - 3 * DAY), ("a", "deploy", TODAY - DAY),
              ("b", "signup", TODAY - 3 * DAY), ("b", "deploy", TODAY - 3 * DAY + 60)]
    report = file_report(events, RetentionQuery(start_event="signup", return_event="deploy"), grid_of("day", 7))
    cohort = report.cohorts[3]
    assert cohort.cohort_start == "2026-05-25T00:00:00Z"
    assert cohort.retained == (2, 0, 1, 0) and cohort.rates == (1.0, 0.0, 0.5, 0.0)
    assert cohort.complete == (True, True, True, False)  # today is in progress


def test_average_rates_weigh_cohorts_by_size_over_complete_cells_only():
    counts = RetentionCounts(retained=np.array([[[4, 2, 1], [1, 1, 0], [5, 0, 0]]]), users=np.array([10]),
                             start_event_seen=True, return_event_seen=True)
    grid = IntervalGrid("week", first=2900, count=3, complete=2, end=0)
    report = retention_report(RetentionQuery(), grid, counts)
    # Period 0: the two complete cohorts (sizes 4 and 1); period 1: the first only (its cell is
    # interval 1, complete; the second's is the in-progress interval 2); period 2: none complete.
    assert report.average_rates == ((4 + 1) / (4 + 1), 2 / 4, None)
    assert "incomplete_period" in report.status_codes and "empty_cohort" not in report.status_codes
    assert [c.complete for c in report.cohorts] == [(True, True, False), (True, False), (False,)]


def test_empty_cohorts_are_listed_with_size_zero_and_null_rates():
    report = file_report([("a", "x", TODAY - 2 * DAY)], RetentionQuery(), grid_of("day", 7))
    assert len(report.cohorts) == 7 and len(report.average_rates) == 7
    assert report.cohorts[0].size == 0 and report.cohorts[0].rates == (None,) * 7
    assert report.cohorts[0].retained == (0,) * 7
    assert report.status_codes == ("empty_cohort", "incomplete_period")


def test_an_unknown_event_gives_an_empty_result_and_says_so():
    events = [("a", "signup", TODAY - 2 * DAY), ("a", "deploy", TODAY - DAY)]
    report = file_report(events, RetentionQuery(start_event="no such event"), grid_of("week", 30))
    assert all(c.size == 0 for c in report.cohorts)
    assert report.status_codes == ("unknown_start_event", "no_users", "empty_cohort", "incomplete_period")
    named_later = file_report(events, RetentionQuery(return_event="deploy"), grid_of("day", 7, now=TODAY - DAY))
    assert "unknown_return_event" not in named_later.status_codes
    before_range_end = grid_of("day", 7, now=TODAY - DAY)
    late = file_report(events, RetentionQuery(return_event="deploy"),
                       interval_grid("day", range_start=before_range_end.start(0), range_end=TODAY - DAY, now=NOW))
    assert "unknown_return_event" in late.status_codes  # deploy happens only after the range's end


def test_the_body_is_the_contract_shape_and_matches_its_schema():
    events = [("a", "signup", TODAY - 9 * DAY), ("b", "signup", TODAY - 2 * DAY), ("a", "signup", TODAY)]
    report = file_report(events, RetentionQuery(start_event="", return_event="signup"), grid_of("week", 90))
    body = to_json(report)
    assert list(body) == ["interval", "mode", "start_event", "return_event", "cohorts", "average_rates",
                          "definitions", "status_codes"]
    assert body["start_event"] is None and body["return_event"] == "signup"  # left out: echoed as null
    assert list(body["cohorts"][0]) == ["cohort_start", "size", "retained", "rates", "complete"]
    assert len(body["average_rates"]) == len(body["cohorts"]) == len(body["cohorts"][0]["retained"]) == 13
    assert body["cohorts"][-1]["complete"] == [False]
    assert body["definitions"]["start_event"] == "any event"
    jsonschema.validate(body, json_schema(RetentionReport))


# --- breakdowns ----------------------------------------------------------------------------------

def test_groups_count_like_plain_runs_on_each_groups_users_and_filtered_users_count_nowhere():
    rng = np.random.default_rng(5)
    events = [(f"u{rng.integers(12)}", str(rng.choice(["signup", "deploy"])), TODAY - int(rng.integers(0, 60 * DAY)))
              for _ in range(400)]
    log = make_log(events)
    group_of_user = np.array([int(name[1:]) % 3 - 1 for name in log.user_names], dtype=np.int32)  # -1, 0 or 1
    grid = grid_of("week", 30)
    for query in (RetentionQuery(), RetentionQuery("recurring", "signup", "deploy")):
        grouped = retention_counts(log, query, grid, group_of_user=group_of_user, n_groups=2)
        for group in (0, 1):
            members = {name for name, g in zip(log.user_names, group_of_user) if g == group}
            alone = retention_counts(make_log([e for e in events if e[0] in members]), query, grid)
            assert grouped.retained[group].tolist() == alone.retained[0].tolist()
            assert grouped.users[group] == alone.users[0]
    with pytest.raises(ValueError, match="outside -1..1"):
        retention_counts(log, RetentionQuery(), grid, group_of_user=group_of_user + 1, n_groups=2)


# --- both backends against the reference ----------------------------------------------------------

NAMES = ("signup", "deploy", "view")
# Times on a grid of days reaching far before the range, with seconds at day edges: ties, repeats,
# first events long before the range, and Sunday-to-Monday crossings are all frequent.
# Most days fall in the last week or month, so that users first seen inside the range are common too.
moments = st.builds(lambda day, second: TODAY + day * DAY + second,
                    st.integers(-130, 1) | st.integers(-35, 1) | st.integers(-9, 1),
                    st.sampled_from([-1, 0, 1, 3_600, 43_200, DAY - 1]))
event_logs = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3", "u'4", "u5"]), st.sampled_from(NAMES), moments),
                      min_size=1, max_size=60)
queries = st.builds(RetentionQuery, st.sampled_from(["first_time", "recurring"]),
                    st.sampled_from([None, "signup", "view", "missing"]), st.sampled_from([None, "deploy", "signup"]))
ranges = st.tuples(st.sampled_from([7, 30, 90]), st.booleans(), st.sampled_from([0, 1, 43_200, DAY - 1]))


def resolve(days: int, rolling: bool, now_second: int) -> tuple[int, int, int]:
    """(range_start, range_end, now): calendar days ending today, or a rolling window ending now."""
    now = TODAY + now_second
    if rolling:
        return now - days * DAY, now, now
    return (*calendar_range(days), now)


@settings(max_examples=150, deadline=None)
@given(events=event_logs, query=queries, interval=st.sampled_from(["day", "week"]), window=ranges)
def test_the_file_backend_equals_the_reference(events, query, interval, window):
    start, end, now = resolve(*window)
    grid = interval_grid(interval, range_start=start, range_end=end, now=now)
    expected = reference_retention(events, interval=interval, mode=query.mode, start_event=query.start_event,
                                   return_event=query.return_event, range_start=start, range_end=end, now=now)
    assert shape(file_report(events, query, grid)) == expected


@settings(max_examples=20, deadline=None)
@given(events=event_logs, query=queries, interval=st.sampled_from(["day", "week"]), window=ranges)
def test_clickhouse_equals_the_file_backend_and_the_reference(engine, events, query, interval, window):
    start, end, now = resolve(*window)
    grid = interval_grid(interval, range_start=start, range_end=end, now=now)
    table = f"retention_{next(TABLES)}"
    engine.create_events_table(f"default.{table}", [Event(*event) for event in events])
    source = EventsTable.mapped("default", table, user_id="user_id", event="event", timestamp="timestamp")
    on_clickhouse = retention_report(query, grid, run_on_chdb(engine, retention_query(source, query, grid)))
    assert on_clickhouse == file_report(events, query, grid)
    assert shape(on_clickhouse) == reference_retention(
        events, interval=interval, mode=query.mode, start_event=query.start_event, return_event=query.return_event,
        range_start=start, range_end=end, now=now)


def seeded_log(seed: int) -> list[tuple[str, str, int]]:
    """A few hundred events of 40 users, each first seen on a random day of the last 130."""
    rng = np.random.default_rng(seed)
    events = []
    for user in range(40):
        first = int(rng.integers(-130, 1))
        for _ in range(int(rng.integers(1, 15))):
            day = int(rng.integers(first, 2))
            second = int(rng.choice([0, DAY - 1, int(rng.integers(DAY))]))
            events.append((f"user {user}", str(rng.choice(NAMES)), TODAY + day * DAY + second))
    return events


@pytest.mark.parametrize("seed", range(2))
def test_both_backends_equal_the_reference_on_seeded_logs(engine, seed):
    events = seeded_log(seed)
    table = f"retention_{next(TABLES)}"
    engine.create_events_table(f"default.{table}", [Event(*event) for event in events])
    source = EventsTable.mapped("default", table, user_id="user_id", event="event", timestamp="timestamp")
    for interval, mode, (start_event, return_event), window in itertools.product(
            ["day", "week"], ["first_time", "recurring"], [(None, None), ("signup", "deploy")],
            [(90, False, 43_200), (30, True, 1)]):
        query = RetentionQuery(mode, start_event, return_event)
        start, end, now = resolve(*window)
        grid = interval_grid(interval, range_start=start, range_end=end, now=now)
        on_file = file_report(events, query, grid)
        assert shape(on_file) == reference_retention(events, interval=interval, mode=mode, start_event=start_event,
                                                     return_event=return_event, range_start=start, range_end=end,
                                                     now=now)
        assert retention_report(query, grid, run_on_chdb(engine, retention_query(source, query, grid))) == on_file


def test_event_names_travel_as_parameters():
    hostile = "x'); DROP TABLE events; --"
    source = EventsTable.mapped("default", "events", user_id="user_id", event="event", timestamp="timestamp")
    query = retention_query(source, RetentionQuery("first_time", hostile, "deploy"), grid_of("week"))
    assert "DROP" not in query.sql and "deploy" not in query.sql and str(TODAY) not in query.sql
    assert query.parameters["start_event"].text == hostile and query.parameters["return_event"].text == "deploy"
