"""ClickHouse SQL for retention, lifecycle and stickiness: the counts, pushed down.

Each builder returns a :class:`~exporter.events.clickhouse_queries.Query` whose rows read into
the same counts the file backend computes (:mod:`exporter.events.log_retention`), so the report
code (:mod:`exporter.analysis.retention`, whose docstring defines the numbers) cannot tell the
backends apart. Built like :mod:`exporter.events.clickhouse_queries`: the SQL text consists of
this module's constants and the configured, checked identifiers of the events table; every value
(event names, times, interval bounds) is a query parameter.

An interval's index is ``intDiv(t + offset, length)`` with the grid's length and offset as
parameters (weeks: three days of offset put their boundaries on Mondays 00:00 UTC), the same
formula :func:`~exporter.analysis.retention.interval_index` applies.

Every answer is a few rows per interval: ``(measure, grp, cell, period, users)`` with ``measure``
naming the count. ``grp`` is the user's value of the breakdown property, added where each query
forms its per-user relation (``members``, ``per_user``, ``days``) by
:func:`~exporter.events.clickhouse_queries.with_group`: a constant ``''`` for a plain query, else
an ``INNER JOIN`` with the per-user ``(user_id, grp)`` subquery of the selection, which drops
the users the filters drop; every count is grouped by ``grp``, and the reader turns the values
found into the leading group axis of the counts (``values`` in the same order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from exporter.analysis.breakdowns import EVERYONE, Selection
from exporter.analysis.retention import (
    STICKINESS_DAYS,
    STICKINESS_WEEK_DAYS,
    IntervalGrid,
    LifecycleCounts,
    RetentionCounts,
    RetentionQuery,
    StickinessCounts,
    stickiness_last_day,
)
from exporter.analysis.segments import DAY_SECONDS
from exporter.events.clickhouse_queries import (
    EventsTable,
    GroupValues,
    Parameter,
    Parameters,
    Query,
    Row,
    with_group,
)

Cell = tuple[str, int, int, int]  # (grp, cell, period, users)


def retention_query(events: EventsTable, query: RetentionQuery, grid: IntervalGrid,
                    selection: Selection = EVERYONE) -> Query[RetentionCounts]:
    """Cohort sizes and retained users per (group, cohort, period) for ``query`` over ``grid``, of
    the users ``selection`` keeps (values as of ``grid.end``).

    ``members``: one row per (user, cohort): the interval of the user's first start event over the
    whole history when it is listed (first_time), or every listed interval with a start event
    (recurring). ``returns``: distinct (user, interval) pairs with a return event in the listed
    intervals. A member's retained cells are its returns after its cohort; period 0 is the size.
    """
    bind = Parameters()
    index = _interval_index(bind, grid)
    window = events.rows(bind, start=grid.start(0), end=grid.end)
    start_is = _event_is(bind, "start_event", query.start_event)
    return_is = _event_is(bind, "return_event", query.return_event)
    if query.mode == "first_time":
        history = events.rows(bind, end=grid.end)
        cohorts = (f"SELECT user_id, {index('min(t)')} AS cohort FROM ({history}) WHERE {start_is} "
                   f"GROUP BY user_id HAVING cohort >= {bind('first_interval', Parameter.int64(grid.first))}")
    else:
        cohorts = f"SELECT DISTINCT user_id, {index('t')} AS cohort FROM ({window}) WHERE {start_is}"
    members = with_group(cohorts, events, bind, selection, end=grid.end)
    returns = f"SELECT DISTINCT user_id, {index('t')} AS returned FROM ({window}) WHERE {return_is}"
    parts = [
        (f"SELECT 'retained' AS measure, grp, cohort AS cell, returned - cohort AS period, count() AS users "
         f"FROM ({members}) AS m INNER JOIN ({returns}) AS r USING user_id WHERE returned > cohort "
         "GROUP BY grp, cell, period"),
        f"SELECT 'retained', grp, cohort, toInt64(0), count() FROM ({members}) GROUP BY grp, cohort",
        f"SELECT 'users', grp, toInt64(0), toInt64(0), uniqExact(user_id) FROM ({members}) GROUP BY grp",
    ]
    seen = [_seen(events, bind, grid, measure, condition) for measure, name, condition in (
        ("start_event_seen", query.start_event, start_is), ("return_event_seen", query.return_event, return_is))
        if name is not None]
    sql = " UNION ALL ".join(parts + seen)

    def read(rows: list[Row]) -> RetentionCounts:
        cells = _cells(rows)
        groups = _groups(cells, selection, ("retained", "users"))
        n = grid.count
        retained = np.zeros((groups.count, n, n), dtype=np.int64)
        for group, cohort, period, users in cells["retained"]:
            retained[groups.code(group), cohort - grid.first, period] = users
        return RetentionCounts(retained=retained, users=_per_group(cells["users"], groups),
                               start_event_seen=query.start_event is None or _flag(cells["start_event_seen"]),
                               return_event_seen=query.return_event is None or _flag(cells["return_event_seen"]),
                               values=groups.values)

    return Query(sql, bind.values, read)


def lifecycle_query(events: EventsTable, grid: IntervalGrid, selection: Selection = EVERYONE
                    ) -> Query[LifecycleCounts]:
    """New, returning, resurrecting and dormant users per (group, listed interval) (activity = any
    event), of the users ``selection`` keeps (values as of ``grid.end``).

    ``per_user``: every user active from the interval before the first listed one, with the
    intervals they were active in and the interval of their first event over the whole history.
    Each user then yields one ``(status, interval)`` cell per listed interval they were active in,
    one ``('dormant', i + 1)`` per active interval i not followed by activity in i + 1 (up to the
    last listed), and one ``('users', 0)`` if active in a listed interval.
    """
    bind = Parameters()
    index = _interval_index(bind, grid)
    first = bind("first_interval", Parameter.int64(grid.first))
    last = bind("last_interval", Parameter.int64(grid.first + grid.count - 1))
    window = events.rows(bind, start=grid.start(-1), end=grid.end)
    history = events.rows(bind, end=grid.end)
    per_user = with_group(
        f"SELECT user_id, first_active, active FROM "
        f"(SELECT user_id, groupUniqArray({index('t')}) AS active FROM ({window}) GROUP BY user_id) AS w "
        f"INNER JOIN (SELECT user_id, {index('min(t)')} AS first_active FROM ({history}) GROUP BY user_id) AS h "
        "USING user_id", events, bind, selection, end=grid.end)
    cells = (
        "arrayConcat("
        f"arrayMap(i -> (multiIf(i = first_active, 'new', has(active, i - 1), 'returning', 'resurrecting'), i), "
        f"arrayFilter(i -> i >= {first}, active)), "
        f"arrayMap(i -> ('dormant', i + 1), arrayFilter(i -> i < {last} AND NOT has(active, i + 1), active)), "
        f"arrayFilter(users -> arrayExists(i -> i >= {first}, active), [('users', toInt64(0))]))")
    sql = (f"SELECT status.1 AS measure, grp, status.2 AS cell, toInt64(0) AS period, count() AS users "
           f"FROM (SELECT grp, arrayJoin({cells}) AS status FROM ({per_user})) GROUP BY measure, grp, cell")

    def read(rows: list[Row]) -> LifecycleCounts:
        cells = _cells(rows)
        groups = _groups(cells, selection, cells)

        def status(name: str) -> np.ndarray:
            return _per_group_and_cell(cells[name], groups, grid.first, grid.count)

        return LifecycleCounts(new=status("new"), returning=status("returning"), resurrecting=status("resurrecting"),
                               dormant=status("dormant"), users=_per_group(cells["users"], groups),
                               values=groups.values)

    return Query(sql, bind.values, read)


def stickiness_query(events: EventsTable, *, now: int, selection: Selection = EVERYONE) -> Query[StickinessCounts]:
    """Distinct active users per group and day of the 28 complete days before ``now``'s day, in the
    last 7, in all 28, of the users ``selection`` keeps (values as of ``now + 1``)."""
    bind = Parameters()
    last_day = stickiness_last_day(now)
    window = events.rows(bind, start=(last_day - STICKINESS_DAYS + 1) * DAY_SECONDS, end=(last_day + 1) * DAY_SECONDS)
    week_start = bind("week_first_day", Parameter.int64(last_day - STICKINESS_WEEK_DAYS + 1))
    days = with_group(f"SELECT user_id, intDiv(t, {DAY_SECONDS}) AS day FROM ({window})", events, bind, selection,
                      end=now + 1)
    sql = " UNION ALL ".join([
        (f"SELECT 'daily' AS measure, grp, day AS cell, toInt64(0) AS period, uniqExact(user_id) AS users "
         f"FROM ({days}) GROUP BY grp, day"),
        (f"SELECT 'weekly', grp, toInt64(0), toInt64(0), uniqExactIf(user_id, day >= {week_start}) "
         f"FROM ({days}) GROUP BY grp"),
        f"SELECT 'monthly', grp, toInt64(0), toInt64(0), uniqExact(user_id) FROM ({days}) GROUP BY grp",
    ])

    def read(rows: list[Row]) -> StickinessCounts:
        cells = _cells(rows)
        groups = _groups(cells, selection, cells)
        daily = _per_group_and_cell(cells["daily"], groups, last_day - STICKINESS_DAYS + 1, STICKINESS_DAYS)
        return StickinessCounts(last_day=last_day, daily=daily, weekly=_per_group(cells["weekly"], groups),
                                monthly=_per_group(cells["monthly"], groups), values=groups.values)

    return Query(sql, bind.values, read)


# --- helpers --------------------------------------------------------------------------------

def _interval_index(bind: Parameters, grid: IntervalGrid):
    """SQL of the interval index of a time expression, the grid's length and offset as parameters."""
    offset = bind("interval_offset", Parameter.int64(grid.offset))
    length = bind("interval_length", Parameter.int64(grid.length))
    return lambda seconds: f"intDiv({seconds} + {offset}, {length})"


def _event_is(bind: Parameters, name: str, event: str | None) -> str:
    """SQL truth value: is ``event`` the one named (always true for any event)."""
    return "1" if event is None else f"event = {bind(name, Parameter.string(event))}"


def _seen(events: EventsTable, bind: Parameters, grid: IntervalGrid, measure: str, condition: str) -> str:
    """A row ``(measure, '', 0, 0, 0 or 1)``: does an event meeting ``condition`` occur before the range's end."""
    history = events.rows(bind, end=grid.end)
    return (f"SELECT '{measure}', '', toInt64(0), toInt64(0), count() "
            f"FROM (SELECT 1 FROM ({history}) WHERE {condition} LIMIT 1)")


def _cells(rows: list[Row]) -> dict[str, list[Cell]]:
    """Rows by measure, as ``(grp, cell, period, users)`` (ClickHouse quotes 64-bit integers)."""
    cells: dict[str, list[Cell]] = defaultdict(list)
    for row in rows:
        cells[str(row["measure"])].append(
            (str(row["grp"]), int(row["cell"]), int(row["period"]), int(row["users"])))
    return cells


def _groups(cells: dict[str, list[Cell]], selection: Selection, counted: Iterable[str]) -> GroupValues:
    """The breakdown values the rows of the ``counted`` measures name."""
    return GroupValues.found((group for measure in counted for group, *_ in cells[measure]), selection)


def _flag(cells: list[Cell]) -> bool:
    """The truth of a one-row answer to a yes-or-no question."""
    (row,) = cells
    return row[-1] > 0


def _per_group(cells: list[Cell], groups: GroupValues) -> np.ndarray:
    """One count per group from rows holding one number each (groups without a row count 0)."""
    counts = np.zeros(groups.count, dtype=np.int64)
    for group, _, _, users in cells:
        counts[groups.code(group)] = users
    return counts


def _per_group_and_cell(cells: list[Cell], groups: GroupValues, first: int, count: int) -> np.ndarray:
    """Counts shaped ``(groups, count)`` from rows of cells ``first .. first + count - 1``."""
    counts = np.zeros((groups.count, count), dtype=np.int64)
    for group, cell, _, users in cells:
        counts[groups.code(group), cell - first] = users
    return counts
