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

Each query makes **one** per-user relation (one pass over the events) and turns every user into
the cells it counts in, an array of ``(measure, cell, period)`` tuples, which ``arrayJoin`` and one
``GROUP BY`` count: the answer is a few rows per interval, ``(measure, grp, cell, period, users)``.
``grp`` is the user's value of the breakdown property, added to the per-user relation by
:func:`~exporter.events.clickhouse_queries.with_group`: a constant ``''`` for a plain query, else
a join with each user's latest property values, which also drops the users the filters drop. So
the selection is read once per query, and the reader turns the values found into the leading
group axis of the counts (``values`` in the same order).
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

    Per user: ``cohorts``, the interval of the first start event over the whole history when it
    is listed (first_time), or every listed interval with a start event (recurring); ``returned``,
    the listed intervals with a return event. A user counts in ``('retained', c, 0)`` for each of
    its cohorts (the sizes), in ``('retained', c, r - c)`` for each return ``r`` after cohort ``c``,
    and once in ``('users', 0, 0)``.
    """
    bind = Parameters()
    index = _interval_index(bind, grid)
    start_is = _event_is(bind, "start_event", query.start_event)
    return_is = _event_is(bind, "return_event", query.return_event)
    if query.mode == "first_time":
        source = events.rows(bind, end=grid.end)  # the whole history: a first start may precede the range
        listed = bind("first_listed_start", Parameter.int64(grid.start(0)))
        cohorts = f"[{index(f'minIf(t, {start_is})')}]"
        returned = f"groupUniqArrayIf({index('t')}, {return_is} AND t >= {listed})"
        members = f"countIf({start_is}) > 0 AND cohorts[1] >= {bind('first_interval', Parameter.int64(grid.first))}"
    else:
        source = events.rows(bind, start=grid.start(0), end=grid.end)
        cohorts = f"groupUniqArrayIf({index('t')}, {start_is})"
        returned = f"groupUniqArrayIf({index('t')}, {return_is})"
        members = "notEmpty(cohorts)"
    per_user = (f"SELECT user_id, {cohorts} AS cohorts, {returned} AS returned FROM ({source}) "
                f"GROUP BY user_id HAVING {members}")
    cells = ("arrayConcat(arrayMap(c -> ('retained', c, toInt64(0)), cohorts), "
             "arrayFlatten(arrayMap(c -> arrayMap(r -> ('retained', c, r - c), arrayFilter(r -> r > c, returned)), "
             "cohorts)), [('users', toInt64(0), toInt64(0))])")
    seen = [_seen(events, bind, grid, measure, condition) for measure, name, condition in (
        ("start_event_seen", query.start_event, start_is), ("return_event_seen", query.return_event, return_is))
        if name is not None]
    counted = _count_cells(with_group(per_user, events, bind, selection, end=grid.end), cells)
    sql = " UNION ALL ".join([counted, *seen])

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

    Per user: ``active``, the intervals it was active in from the one before the first listed,
    and ``first_active``, the interval of its first event over the whole history (users seen
    only before that interval have no activity to count). A user counts in one ``(status, i)``
    cell per listed interval ``i`` it was active in, one ``('dormant', i + 1)`` per active
    interval ``i`` not followed by activity in ``i + 1`` (up to the last listed), and once in
    ``('users', 0)`` if active in a listed interval.
    """
    bind = Parameters()
    index = _interval_index(bind, grid)
    first = bind("first_interval", Parameter.int64(grid.first))
    last = bind("last_interval", Parameter.int64(grid.first + grid.count - 1))
    listed = bind("before_first_start", Parameter.int64(grid.start(-1)))
    history = events.rows(bind, end=grid.end)
    per_user = (f"SELECT user_id, {index('min(t)')} AS first_active, groupUniqArrayIf({index('t')}, t >= {listed}) "
                f"AS active FROM ({history}) GROUP BY user_id HAVING notEmpty(active)")
    cells = (
        "arrayConcat("
        "arrayMap(i -> (multiIf(i = first_active, 'new', has(active, i - 1), 'returning', 'resurrecting'), i, "
        f"toInt64(0)), arrayFilter(i -> i >= {first}, active)), "
        f"arrayMap(i -> ('dormant', i + 1, toInt64(0)), arrayFilter(i -> i < {last} AND NOT has(active, i + 1), "
        "active)), "
        f"arrayFilter(users -> arrayExists(i -> i >= {first}, active), [('users', toInt64(0), toInt64(0))]))")
    sql = _count_cells(with_group(per_user, events, bind, selection, end=grid.end), cells)

    def read(rows: list[Row]) -> LifecycleCounts:
        cells = _cells(rows)
        groups = _groups(cells, selection, ("new", "returning", "resurrecting", "dormant", "users"))

        def status(name: str) -> np.ndarray:
            return _per_group_and_cell(cells[name], groups, grid.first, grid.count)

        return LifecycleCounts(new=status("new"), returning=status("returning"), resurrecting=status("resurrecting"),
                               dormant=status("dormant"), users=_per_group(cells["users"], groups),
                               values=groups.values)

    return Query(sql, bind.values, read)


def stickiness_query(events: EventsTable, *, now: int, selection: Selection = EVERYONE) -> Query[StickinessCounts]:
    """Distinct active users per group and day of the 28 complete days before ``now``'s day, in the
    last 7, in all 28, of the users ``selection`` keeps (values as of ``now + 1``).

    Per user active in the 28 days: one ``('daily', day)`` cell per active day, ``('weekly', 0)``
    if active in the last 7, ``('monthly', 0)``.
    """
    bind = Parameters()
    last_day = stickiness_last_day(now)
    window = events.rows(bind, start=(last_day - STICKINESS_DAYS + 1) * DAY_SECONDS, end=(last_day + 1) * DAY_SECONDS)
    week_start = bind("week_first_day", Parameter.int64(last_day - STICKINESS_WEEK_DAYS + 1))
    per_user = f"SELECT user_id, groupUniqArray(intDiv(t, {DAY_SECONDS})) AS days FROM ({window}) GROUP BY user_id"
    cells = ("arrayConcat(arrayMap(d -> ('daily', d, toInt64(0)), days), "
             f"arrayFilter(week -> arrayExists(d -> d >= {week_start}, days), [('weekly', toInt64(0), toInt64(0))]), "
             "[('monthly', toInt64(0), toInt64(0))])")
    sql = _count_cells(with_group(per_user, events, bind, selection, end=now + 1), cells)

    def read(rows: list[Row]) -> StickinessCounts:
        cells = _cells(rows)
        groups = _groups(cells, selection, ("daily", "weekly", "monthly"))
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


def _count_cells(per_user: str, cells: str) -> str:
    """SQL of the rows ``(measure, grp, cell, period, users)``: how many users of ``per_user`` (a
    relation with a ``grp`` column) count in each cell, ``cells`` being the SQL of a user's array
    of ``(measure, cell, period)`` tuples over that relation's columns."""
    return ("SELECT status.1 AS measure, grp, status.2 AS cell, status.3 AS period, count() AS users "
            f"FROM (SELECT grp, arrayJoin({cells}) AS status FROM ({per_user})) GROUP BY measure, grp, cell, period")


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
