"""Daily users from the event log (the series that are forecast), against a plain per-day reference
written with sets; the ClickHouse backend is held equal to this one in test_clickhouse_source.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analysis.usage import DailyUsers
from exporter.events.log_activity import daily_users
from tests.event_logs import make_log

DAY = 86_400
START = 20_000 * DAY  # a UTC midnight (2024-10-04)


def reference(events, names, start, end, meaningful):
    """Per day of [start, end): the users with a meaningful event, and with each name."""
    days = -(-(end - start) // DAY)
    active = [set() for _ in range(days)]
    by_name = {name: [set() for _ in range(days)] for name in names}
    for user, name, ts in events:
        if start <= ts < end:
            day = (ts - start) // DAY
            if meaningful is None or name in meaningful:
                active[day].add(user)
            if name in by_name:
                by_name[name][day].add(user)
    return DailyUsers(tuple(map(len, active)), {name: tuple(map(len, sets)) for name, sets in by_name.items()})


moments = st.builds(lambda day, second: START + day * DAY + second,
                    st.integers(-2, 9), st.sampled_from([0, 1, 3_599, 43_200, DAY - 1]))
logs = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.sampled_from(["login", "deploy", "docs"]),
                          moments), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(events=logs, meaningful=st.none() | st.just(frozenset({"deploy", "docs"})),
       end=st.sampled_from([START + 7 * DAY, START + 7 * DAY + 1, START + 3 * DAY + 43_200, START]))
def test_daily_users_equal_a_plain_count_per_day(events, meaningful, end):
    names = ["deploy", "never-seen", "login"]
    counted = daily_users(make_log(events), names, START, end, meaningful_events=meaningful)
    assert counted == reference(events, names, START, end, meaningful)


def test_a_partial_last_day_counts_up_to_the_end():
    events = [("a", "deploy", START + 10), ("b", "deploy", START + DAY + 5), ("c", "deploy", START + DAY + 100)]
    counted = daily_users(make_log(events), ["deploy"], START, START + DAY + 50)
    assert counted == DailyUsers((1, 1), {"deploy": (1, 1)})  # c, at second 100 of day 2, is not in yet


def test_the_days_start_at_a_utc_midnight():
    with pytest.raises(ValueError, match="midnight"):
        daily_users(make_log([("a", "x", START)]), [], START + 1, START + DAY)
