"""Shared by the retention and lifecycle tests: plain per-user references, and the SQL run on chdb.

The references are written user by user with Python sets and ``datetime`` calendars (ISO weeks from
``date.weekday()``), as the obviously correct reading of ``docs/retention.md``; they share no code
with the kernels or the SQL, not even the interval arithmetic. Events are ``(user, event, epoch
seconds)`` tuples.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from devtools.clickhouse import ChdbEngine
from exporter.events.clickhouse_queries import Query

Events = Sequence[tuple[str, str, int]]


def interval_of(ts: int, interval: str) -> date:
    """The first day of the interval holding ``ts``: the UTC day, or the Monday of its ISO week."""
    day = datetime.fromtimestamp(ts, UTC).date()
    return day if interval == "day" else day - timedelta(days=day.weekday())


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Calendar:
    """The intervals starting in [range_start, range_end), oldest first, and which have ended."""

    days: list[date]  # first day of each listed interval
    complete: list[bool]
    before: date  # the interval just before the first listed one

    @classmethod
    def of(cls, interval: str, range_start: int, range_end: int, now: int) -> Calendar:
        step = timedelta(days=1 if interval == "day" else 7)
        day = interval_of(range_start, interval)
        if midnight(day) < range_start:
            day += step
        days = []
        while midnight(day) < range_end:
            days.append(day)
            day += step
        ended = min(now, range_end)
        return cls(days, [midnight(d + step) <= ended for d in days], days[0] - step)

    def iso(self) -> list[str]:
        return [d.isoformat() + "T00:00:00Z" for d in self.days]


def reference_retention(events: Events, *, interval: str, mode: str, start_event: str | None,
                        return_event: str | None, range_start: int, range_end: int, now: int) -> dict:
    """Cohort starts, sizes, retained users and completeness, and the size-weighted average rates."""
    calendar = Calendar.of(interval, range_start, range_end, now)
    starts, returns = defaultdict(set), defaultdict(set)  # user -> intervals
    first_start: dict[str, int] = {}
    for user, name, ts in events:
        if ts >= range_end:
            continue
        if start_event is None or name == start_event:
            starts[user].add(interval_of(ts, interval))
            first_start[user] = min(first_start.get(user, ts), ts)
        if return_event is None or name == return_event:
            returns[user].add(interval_of(ts, interval))
    members = {day: set() for day in calendar.days}
    for user in starts:
        cohorts = [interval_of(first_start[user], interval)] if mode == "first_time" else starts[user]
        for cohort in cohorts:
            if cohort in members:
                members[cohort].add(user)
    cohorts = []
    for c, day in enumerate(calendar.days):
        later = calendar.days[c:]
        retained = [len(members[day])] + [sum(1 for user in members[day] if d in returns[user]) for d in later[1:]]
        cohorts.append({"size": len(members[day]), "retained": retained,
                        "rates": [r / len(members[day]) if members[day] else None for r in retained],
                        "complete": calendar.complete[c:]})
    average_rates = []
    for k in range(len(calendar.days)):
        with_cell = [cohort for cohort in cohorts if len(cohort["complete"]) > k and cohort["complete"][k]]
        size = sum(cohort["size"] for cohort in with_cell)
        average_rates.append(sum(cohort["retained"][k] for cohort in with_cell) / size if size else None)
    return {"cohort_starts": calendar.iso(), "cohorts": cohorts, "average_rates": average_rates}


def reference_lifecycle(events: Events, *, interval: str, range_start: int, range_end: int, now: int) -> dict:
    """Per listed interval: new, returning, resurrecting, dormant users and completeness."""
    calendar = Calendar.of(interval, range_start, range_end, now)
    active, first_seen = defaultdict(set), {}
    for user, _, ts in events:
        if ts < range_end:
            active[user].add(interval_of(ts, interval))
            first_seen[user] = min(first_seen.get(user, ts), ts)
    rows = []
    for position, day in enumerate(calendar.days):
        previous = calendar.days[position - 1] if position else calendar.before
        counts = dict.fromkeys(("new", "returning", "resurrecting", "dormant"), 0)
        for user, days in active.items():
            first = interval_of(first_seen[user], interval)
            if day in days and first == day:
                counts["new"] += 1
            elif day in days and previous in days:
                counts["returning"] += 1
            elif day in days and first < day:
                counts["resurrecting"] += 1
            if previous in days and day not in days:
                counts["dormant"] += 1
        rows.append({"start": calendar.iso()[position], **counts, "complete": calendar.complete[position]})
    return {"intervals": rows}


def reference_stickiness(events: Events, *, now: int) -> dict:
    """DAU (average over the 28 complete days before today), WAU and MAU, user by user."""
    today = datetime.fromtimestamp(now, UTC).date()
    days = [today - timedelta(days=back) for back in range(28, 0, -1)]
    per_day = {day: set() for day in days}
    for user, _, ts in events:
        day = datetime.fromtimestamp(ts, UTC).date()
        if day in per_day:
            per_day[day].add(user)
    dau = sum(len(users) for users in per_day.values()) / 28
    wau = len(set().union(*(per_day[day] for day in days[-7:])))
    mau = len(set().union(*per_day.values()))
    return {"dau": dau, "wau": wau, "mau": mau, "dau_mau": dau / mau if mau else None,
            "wau_mau": wau / mau if mau else None}


def run_on_chdb(engine: ChdbEngine, query: Query):
    """Run a query's SQL on the engine with its parameters, and read the rows as the source does."""
    body = engine.execute(f"{query.sql} FORMAT JSONEachRow",
                          params={name: parameter.text for name, parameter in query.parameters.items()})
    return query.read([json.loads(line) for line in body.splitlines() if line.strip()])
