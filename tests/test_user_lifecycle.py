"""The user lifecycle (new, returning, resurrecting, dormant) and stickiness, on both backends.

(``test_lifecycle.py`` is about the process's start and stop.) Both the file backend's kernels and
the ClickHouse SQL (run by the real engine in-process, chdb) must give the numbers of the plain
per-user reference in ``tests.retention_reference``.
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
    LifecycleReport,
    interval_grid,
    lifecycle_report,
)
from exporter.events.clickhouse_queries import EventsTable
from exporter.events.clickhouse_retention import lifecycle_query, stickiness_query
from exporter.events.log import EventLog
from exporter.events.log_retention import lifecycle_counts, stickiness_counts
from exporter.results import json_schema, to_json
from tests.event_logs import make_log
from tests.fakes.events import Event
from tests.retention_reference import midnight, reference_lifecycle, reference_stickiness, run_on_chdb
from tests.tools import require_chdb

DAY = 86_400
TODAY = midnight(date(2026, 5, 28))  # a Thursday
MONDAY = midnight(date(2026, 5, 25))
NOW = TODAY + 12 * 3_600
TABLES = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbEngine:
    require_chdb()
    return ChdbEngine(tmp_path_factory.mktemp("clickhouse-lifecycle"))


def grid_of(interval: str, days: int, now: int = NOW) -> IntervalGrid:
    return interval_grid(interval, range_start=TODAY - (days - 1) * DAY, range_end=TODAY + DAY, now=now)


def file_report(events, grid: IntervalGrid, now: int = NOW) -> LifecycleReport:
    log = make_log(events) if events else EventLog.empty()
    return lifecycle_report(grid, lifecycle_counts(log, grid), stickiness_counts(log, now=now))


def statuses(report: LifecycleReport) -> list[tuple[int, int, int, int]]:
    return [(i.new, i.returning, i.resurrecting, i.dormant) for i in report.intervals]


def shape(report: LifecycleReport) -> dict:
    """The report's numbers in the reference's shape."""
    return {"intervals": [{"start": i.start, "new": i.new, "returning": i.returning, "resurrecting": i.resurrecting,
                           "dormant": i.dormant, "complete": i.complete} for i in report.intervals]}


# --- semantics, on small logs -------------------------------------------------------------------

def test_each_status_on_a_hand_made_log():
    days = [TODAY - k * DAY for k in range(4, -1, -1)]  # the 5 days of the range, oldest first
    events = [
        ("veteran", "x", TODAY - 40 * DAY),  # first seen long ago: resurrecting on day 0, then returning
        ("veteran", "x", days[0]), ("veteran", "x", days[1] + 5),
        ("newcomer", "x", days[2]), ("newcomer", "x", days[2] + 1),  # new on day 2, dormant on day 3
        ("yesterday", "x", days[0] - 1),  # active the day before the range: dormant on day 0
    ]
    report = file_report(events, grid_of("day", 5))
    assert statuses(report) == [(0, 0, 1, 1), (0, 1, 0, 0), (1, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0)]
    assert [i.quick_ratio for i in report.intervals] == [1.0, None, 1.0, 0.0, None]
    assert [i.complete for i in report.intervals] == [True, True, True, True, False]
    assert report.status_codes == ("no_dormant_users",)


def test_a_user_first_seen_before_the_range_is_never_new():
    events = [("old", "x", MONDAY - 60 * DAY), ("old", "x", MONDAY + 60)]
    report = file_report(events, grid_of("week", 30))
    assert statuses(report)[-1] == (0, 0, 1, 0)


def test_weeks_run_from_monday_midnight():
    """Sunday 23:59:59 and Monday 00:00:00 are consecutive weeks: returning, not resurrecting."""
    events = [("a", "x", MONDAY - 30 * DAY), ("a", "x", MONDAY - 1), ("a", "x", MONDAY)]
    report = file_report(events, grid_of("week", 30))
    assert report.intervals[-1].start == "2026-05-25T00:00:00Z"
    assert statuses(report)[-2:] == [(0, 0, 1, 0), (0, 1, 0, 0)]


def test_stickiness_is_over_the_28_complete_days_before_today():
    events = [("a", "x", TODAY - 28 * DAY), ("a", "x", TODAY - DAY), ("a", "x", TODAY - DAY + 5),
              ("b", "x", TODAY - 8 * DAY), ("c", "x", TODAY - 29 * DAY), ("d", "x", TODAY)]  # c, d: outside
    sticky = file_report(events, grid_of("day", 7)).stickiness
    assert (sticky.dau, sticky.wau, sticky.mau) == (3 / 28, 1, 2)
    assert (sticky.dau_mau, sticky.wau_mau) == (3 / 28 / 2, 0.5)
    definitions = file_report(events, grid_of("day", 7)).definitions["stickiness"]["days"]
    assert definitions == {"first": "2026-04-30T00:00:00Z", "last": "2026-05-27T00:00:00Z"}


def test_nobody_active_is_a_zero_report_with_null_ratios():
    report = file_report([], grid_of("week", 30))
    assert statuses(report) == [(0, 0, 0, 0)] * 4
    assert report.stickiness.dau == 0 and report.stickiness.dau_mau is None
    assert report.status_codes == ("no_active_users", "no_dormant_users", "no_active_users_28d")


def test_the_body_is_the_contract_shape_and_matches_its_schema():
    events = [("a", "x", TODAY - 3 * DAY), ("b", "x", TODAY - 2 * DAY), ("a", "x", TODAY)]
    body = to_json(file_report(events, grid_of("day", 30)))
    assert list(body) == ["interval", "intervals", "stickiness", "definitions", "status_codes"]
    assert list(body["intervals"][0]) == ["start", "new", "returning", "resurrecting", "dormant", "quick_ratio",
                                          "complete"]
    assert list(body["stickiness"]) == ["dau", "wau", "mau", "dau_mau", "wau_mau"]
    assert len(body["intervals"]) == 30 and body["intervals"][-1]["complete"] is False
    jsonschema.validate(body, json_schema(LifecycleReport))


def test_groups_count_like_plain_runs_on_each_groups_users():
    rng = np.random.default_rng(8)
    events = [(f"u{rng.integers(15)}", "x", TODAY - int(rng.integers(-DAY, 70 * DAY))) for _ in range(300)]
    log = make_log(events)
    group_of_user = np.array([int(name[1:]) % 4 - 1 for name in log.user_names], dtype=np.int32)  # -1..2
    grid = grid_of("week", 30)
    lifecycle = lifecycle_counts(log, grid, group_of_user=group_of_user, n_groups=3)
    sticky = stickiness_counts(log, now=NOW, group_of_user=group_of_user, n_groups=3)
    for group in range(3):
        members = {name for name, g in zip(log.user_names, group_of_user) if g == group}
        alone_log = make_log([e for e in events if e[0] in members])
        alone = lifecycle_report(grid, lifecycle_counts(alone_log, grid), stickiness_counts(alone_log, now=NOW))
        assert lifecycle_report(grid, lifecycle, sticky, group=group) == alone
        assert lifecycle.users[group] == lifecycle_counts(alone_log, grid).users[0]


# --- both backends against the reference ----------------------------------------------------------

moments = st.builds(lambda day, second: TODAY + day * DAY + second,
                    st.integers(-100, 1) | st.integers(-35, 1) | st.integers(-9, 1),
                    st.sampled_from([-1, 0, 1, 3_600, DAY - 1]))
event_logs = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3", "u'4", "u5", "u6"]), st.just("x"), moments),
                      min_size=1, max_size=60)
windows = st.tuples(st.sampled_from(["day", "week"]), st.sampled_from([7, 30]),
                    st.sampled_from([TODAY, TODAY + 1, NOW, TODAY + DAY - 1]))


def expected(events, interval: str, days: int, now: int) -> tuple[dict, dict]:
    lifecycle = reference_lifecycle(events, interval=interval, range_start=TODAY - (days - 1) * DAY,
                                    range_end=TODAY + DAY, now=now)
    return lifecycle, reference_stickiness(events, now=now)


@settings(max_examples=150, deadline=None)
@given(events=event_logs, window=windows)
def test_the_file_backend_equals_the_reference(events, window):
    interval, days, now = window
    report = file_report(events, grid_of(interval, days, now), now)
    lifecycle, sticky = expected(events, interval, days, now)
    assert shape(report) == lifecycle
    assert report.stickiness.__dict__ == sticky


def on_clickhouse(engine: ChdbEngine, events, grid: IntervalGrid, now: int) -> LifecycleReport:
    table = f"lifecycle_{next(TABLES)}"
    engine.create_events_table(f"default.{table}", [Event(*event) for event in events])
    source = EventsTable.mapped("default", table, user_id="user_id", event="event", timestamp="timestamp")
    return lifecycle_report(grid, run_on_chdb(engine, lifecycle_query(source, grid)),
                            run_on_chdb(engine, stickiness_query(source, now=now)))


@settings(max_examples=15, deadline=None)
@given(events=event_logs, window=windows)
def test_clickhouse_equals_the_file_backend_and_the_reference(engine, events, window):
    interval, days, now = window
    grid = grid_of(interval, days, now)
    report = on_clickhouse(engine, events, grid, now)
    assert report == file_report(events, grid, now)
    lifecycle, sticky = expected(events, interval, days, now)
    assert shape(report) == lifecycle and report.stickiness.__dict__ == sticky


@pytest.mark.parametrize("seed", range(2))
def test_both_backends_equal_the_reference_on_seeded_logs(engine, seed):
    rng = np.random.default_rng(seed)
    events = []
    for user in range(40):
        first = int(rng.integers(-120, 1))
        events += [(f"user {user}", "x", TODAY + int(rng.integers(first, 2)) * DAY + int(rng.integers(DAY)))
                   for _ in range(int(rng.integers(1, 20)))]
    for interval, days in (("day", 30), ("week", 90)):
        grid = grid_of(interval, days)
        report = on_clickhouse(engine, events, grid, NOW)
        assert report == file_report(events, grid)
        assert shape(report) == expected(events, interval, days, NOW)[0]
