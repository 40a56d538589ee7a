"""ClickHouse SQL for the identified events: funnels, segments and user counts, pushed down.

Each builder returns a :class:`Query`: SQL text, its parameters, and the function that turns the
rows ClickHouse answers into the same structure the in-memory analysis produces, so the pure
report code downstream cannot tell the backends apart. Every query aggregates in ClickHouse and
brings back small results: a few rows per funnel level plus one row per distinct set of step
durations of the users who went past step 1; one row per distinct combination of segment
measures; one row of user counts; one row per feature event (and, with a breakdown, these per
value of the dimension); one row per day and counted event for the daily users.

**Nothing from the configuration or a request is ever formatted into SQL as a value.** The SQL
text consists of this module's constants and of configured identifiers (database, table,
columns) that must be plain identifiers (:mod:`exporter.identifiers`), quoted with backticks.
Every value (event names, times, windows, property names, filter values, the Plausible property
name) is a ClickHouse query parameter ``{name:Type}``, sent apart from the SQL (HTTP
``param_<name>``) and parsed by the server as a value of that type, never as SQL: a hostile event
name is just a string that no event matches.

Semantics match the numpy analyses exactly (``exporter.analysis.funnels`` and ``.segments``;
read their docstrings first):

- Events are ``(user_id, event, t)`` with ``t`` whole epoch seconds, fractions floored as the file
  loader does; rows with an empty user id or event name are not events (the file loader rejects
  them). Time filters are half-open ``[start, end)`` on whole seconds, which floored and raw
  timestamps satisfy alike, so they compare the raw column and the table's index applies.
- Funnels: the file backend advances every attempt at once with one ``searchsorted`` per step;
  here one ``ASOF LEFT JOIN ... ON user AND current < next`` per step finds the same event (the
  earliest of the step strictly after the current one) for every attempt at once. ClickHouse's
  ``windowFunnel(W, 'strict_increase')`` would give the furthest level, but neither the step times
  of the attempt that got there nor per-step windows; the joins give both, in one query.
- Segments: per user, the distinct active days of the last 90 and the measures derived from
  them, aggregated in ClickHouse; the segment rules and the engagement score stay in Python
  (:func:`~exporter.analysis.segments.assign_segments`, ...), applied to the same measures.
- Selections (docs/api.md#filters-and-breakdowns): every question joins its per-user relation
  with each user's values of the properties a :class:`~exporter.analysis.breakdowns.Selection`
  reads (:func:`latest_values`, :func:`with_group`) and keeps the users its filters keep, so
  filtered-out users never leave the server and the answers carry each user's value, or counts
  per value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from exporter.analysis.adoption import FeatureUsers
from exporter.analysis.breakdowns import EVERYONE, NONE, Selection
from exporter.analysis.funnels import FunnelDefinition
from exporter.analysis.segments import DAY_SECONDS, LOOKBACK_DAYS, WINDOW_DAYS, UserActivity
from exporter.analysis.usage import DailyUsers, UserCounts
from exporter.identifiers import quote_identifier

T = TypeVar("T")
Row = dict[str, Any]

PLAUSIBLE_PAGEVIEW = "pageview"
# Plausible (v2.2 and later) records an "engagement" event when a page is left: a measurement of
# the page view before it, not something the user did, so it is not an event of the preset.
PLAUSIBLE_NON_EVENTS = ("engagement",)


# --- parameters ---------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"}
_ESCAPE = re.compile("[\\\\\t\n\r\0]")


def _escaped(text: str) -> str:
    """``text`` in ClickHouse's escaped text format, the one a String query parameter is parsed from:
    a raw tab or newline would end the value, and a backslash starts an escape sequence."""
    return _ESCAPE.sub(lambda match: _ESCAPES[match.group()], text)


def _quoted(text: str) -> str:
    """``text`` as a quoted string literal inside an array parameter's text."""
    return "'" + _escaped(text).replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Parameter:
    """A typed query parameter: the SQL names it ``{name:<type>}``; the value travels apart."""

    type: str
    text: str  # the value in the text form ClickHouse parses it from

    @classmethod
    def string(cls, value: str) -> Parameter:
        return cls("String", _escaped(value))

    @classmethod
    def int64(cls, value: int) -> Parameter:
        return cls("Int64", str(int(value)))

    @classmethod
    def strings(cls, values: Sequence[str]) -> Parameter:
        return cls("Array(String)", "[" + ",".join(map(_quoted, values)) + "]")

    @classmethod
    def uint32s(cls, values: Sequence[int]) -> Parameter:
        return cls("Array(UInt32)", "[" + ",".join(str(int(v)) for v in values) + "]")


@dataclass(frozen=True)
class Query(Generic[T]):
    """SQL (without FORMAT), its parameters by name, and how to read the answer's rows."""

    sql: str
    parameters: Mapping[str, Parameter]
    read: Callable[[list[Row]], T]


class Parameters:
    """Collects the parameters of one query and hands out their ``{name:Type}`` placeholders."""

    def __init__(self) -> None:
        self.values: dict[str, Parameter] = {}

    def __call__(self, name: str, parameter: Parameter) -> str:
        if name in self.values and self.values[name] != parameter:
            raise ValueError(f"query parameter {name!r} bound twice")  # a bug in this module
        self.values[name] = parameter
        return f"{{{name}:{parameter.type}}}"


# --- the events relation ------------------------------------------------------------------------

@dataclass(frozen=True)
class EventsTable:
    """Where the events are and how a row becomes ``(user_id, event, t)`` and its properties.

    ``user_id`` and ``event`` are SQL expressions over the row (alias ``src``), ``timestamp`` the
    DateTime or DateTime64 column, ``condition`` which rows are events at all. ``properties`` is
    the ``Map(String, String)`` column of event properties or, with ``property_keys``, the array of
    values parallel to that array of keys (Plausible's ``meta.value`` / ``meta.key``). Build
    instances with :meth:`mapped` or :meth:`plausible_events_v2`, which quote and check every
    identifier.
    """

    table: str
    user_id: str
    event: str
    timestamp: str
    condition: str = "1"
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    properties: str = "src.`properties`"
    property_keys: str | None = None

    @classmethod
    def mapped(cls, database: str, table: str, *, user_id: str, event: str, timestamp: str,
               properties: str = "properties") -> EventsTable:
        """A table with one column each for the user id, the event name, the timestamp and the
        event properties (read only by the questions that need them)."""
        def column(name: str) -> str:
            return "src." + quote_identifier(name, nested=True)

        return cls(f"{quote_identifier(database)}.{quote_identifier(table)}", user_id=f"toString({column(user_id)})",
                   event=f"toString({column(event)})", timestamp=column(timestamp), properties=column(properties))

    @classmethod
    def plausible_events_v2(cls, database: str, table: str, *, user_id_property: str) -> EventsTable:
        """Plausible's ``events_v2``: the user id from a custom property, the event from ``name``
        (custom events) or ``pathname`` (page views), the properties from ``meta``."""
        parameters = Parameters()
        prop = parameters("user_id_property", Parameter.string(user_id_property))
        non_events = parameters("plausible_non_events", Parameter.strings(PLAUSIBLE_NON_EVENTS))
        values, keys = "src.`meta.value`", "src.`meta.key`"
        return cls(
            f"{quote_identifier(database)}.{quote_identifier(table)}",
            user_id=_property_value(values, keys, prop),
            event=f"if(src.`name` = '{PLAUSIBLE_PAGEVIEW}', src.`pathname`, toString(src.`name`))",
            timestamp="src.`timestamp`",
            condition=f"NOT has({non_events}, toString(src.`name`))",
            parameters=parameters.values,
            properties=values,
            property_keys=keys,
        )

    def property_value(self, name: str) -> str:
        """SQL of the row's value of the property named by ``name`` (a parameter's placeholder);
        ``''`` where the event does not carry it."""
        return _property_value(self.properties, self.property_keys, name)

    def rows(self, bind: Parameters, *, end: int, start: int | None = None, properties: Sequence[str] = (),
             label: str = "events") -> str:
        """SQL of the events with ``start <= t < end``: columns ``user_id``, ``event``, ``t``, then
        ``p0``, ``p1``, ... the values of ``properties`` (``''`` where absent).

        Inside, every column is qualified (``src.``), so the aliases can never shadow a column
        of the same name whatever the table calls its columns. ``label`` names the parameters of
        the bounds and properties, so that one query can read the events up to different ends.
        """
        for name, parameter in self.parameters.items():
            bind(name, parameter)
        bounds = [f"{self.timestamp} < toDateTime({bind(f'{label}_end', Parameter.int64(end))})"]
        if start is not None:
            bounds.insert(0, f"{self.timestamp} >= toDateTime({bind(f'{label}_start', Parameter.int64(start))})")
        values = "".join(
            f", {self.property_value(bind(f'{label}_property_{k}', Parameter.string(name)))} AS p{k}"
            for k, name in enumerate(properties))
        carried = "".join(f", p{k}" for k in range(len(properties)))
        return (f"SELECT user_id, event, t{carried} FROM ("
                f"SELECT {self.user_id} AS user_id, {self.event} AS event, "
                f"toInt64(toUnixTimestamp({self.timestamp})) AS t{values} "
                f"FROM {self.table} AS src WHERE {' AND '.join(bounds)} AND {self.condition}"
                f") WHERE user_id != '' AND event != ''")


def _property_value(values: str, keys: str | None, name: str) -> str:
    """SQL of a property's value: a Map's lookup (``''`` for a missing key), or the value at the
    key's position in parallel arrays (position 0, not found, reads ``''`` too)."""
    if keys is None:
        return f"{values}[{name}]"
    return f"{values}[indexOf({keys}, {name})]"


# --- selections: filters and breakdowns -------------------------------------------------------

def latest_values(events: EventsTable, bind: Parameters, names: Sequence[str], *, end: int) -> str:
    """SQL of ``(user_id, latest_0, latest_1, ...)``: per user with an event before ``end``
    carrying one of the properties ``names``, its value of each (``''`` where it carries none).

    The semantics of :mod:`exporter.events.log_dimensions`: a user's value of a property is the
    one on its latest event carrying it before ``end``, of such events in the same second the
    greatest text (``argMaxIf`` by ``(t, value)``: String comparison is by bytes, which for UTF-8
    is code-point order). An event carries a property unless its value is ``''`` (what a Map
    answers for a missing key) or the text ``(none)``. Only the carrying events are aggregated,
    most of a table's events carrying no dimension at all.
    """
    none = bind("no_value", Parameter.string(NONE))
    source = events.rows(bind, end=end, properties=names, label="selection")
    carries = [f"(p{k} != '' AND p{k} != {none})" for k in range(len(names))]
    latest = ", ".join(f"argMaxIf(p{k}, (t, p{k}), {carried}) AS latest_{k}" for k, carried in enumerate(carries))
    return f"SELECT user_id, {latest} FROM ({source}) WHERE {' OR '.join(carries)} GROUP BY user_id"


def with_group(per_user: str, events: EventsTable, bind: Parameters, selection: Selection, *, end: int) -> str:
    """SQL of the relation ``per_user`` (which has a ``user_id`` column) with a ``grp`` column
    added, the user's value of the breakdown property as of ``end`` (``''`` without a breakdown),
    keeping the rows of the users ``selection``'s filters keep. Without a selection, no join.

    Each user's values come from :func:`latest_values` by a ``LEFT JOIN``: a user missing there
    has no value, ``(none)``, which a filter can ask for. A missing user reads ``''`` from the
    join, or NULL where the server's profile sets ``join_use_nulls`` (a ``readonly=1`` query
    cannot change it): ``ifNull(nullIf(value, ''), '(none)')`` reads both as ``(none)``.
    """
    if selection == EVERYONE:
        return f"SELECT *, '' AS grp FROM ({per_user})"
    names = selection.properties
    none = bind("no_value", Parameter.string(NONE))

    def value(name: str) -> str:
        return f"ifNull(nullIf(latest.latest_{names.index(name)}, ''), {none})"

    kept = [f"has({bind(f'filter_{i}', Parameter.strings(list(values)))}, {value(name)})"
            for i, (name, values) in enumerate(selection.filters)]
    group = "''" if selection.breakdown is None else value(selection.breakdown)
    return (f"SELECT *, {group} AS grp FROM ({per_user}) AS per_user "
            f"LEFT JOIN ({latest_values(events, bind, names, end=end)}) AS latest USING user_id "
            f"WHERE {' AND '.join(kept) or '1'}")


@dataclass(frozen=True)
class GroupValues:
    """The breakdown values an answer's rows name (their ``grp`` texts) as value codes.

    Without a breakdown there are no values and every row is group 0. With one, the values are
    those found, then ``(none)`` last whether found or not, as the file backend lists them
    (:class:`~exporter.events.log_dimensions.UserSelection`), so a count answer always has at
    least one group.
    """

    values: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {value: code for code, value in enumerate(self.values)})

    @classmethod
    def found(cls, texts: Iterable[str], selection: Selection) -> GroupValues:
        if selection.breakdown is None:
            return cls(())
        return cls((*sorted(set(texts) - {NONE}), NONE))

    @property
    def count(self) -> int:
        """The length of a count answer's group axis."""
        return max(len(self.values), 1)

    def code(self, text: str) -> int:
        """The value code of a row's ``grp`` (0 without a breakdown, where ``grp`` is ``''``)."""
        return self._index[text] if self.values else 0


def _meaningful(bind: Parameters, meaningful_events: Collection[str] | None) -> str:
    """SQL truth value: is ``event`` meaningful (every event when the set is None)."""
    if meaningful_events is None:
        return "1"
    return f"has({bind('meaningful_events', Parameter.strings(sorted(meaningful_events)))}, event)"


# --- funnels ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FunnelDurations:
    """A funnel's outcome as ClickHouse returns it: every entrant's furthest step and step
    durations (the order of users is arbitrary).

    Offers what the funnel report reads (:class:`~exporter.analysis.funnels.FunnelProgress`):
    ``levels`` (1..n per user who entered), :meth:`transition_seconds`,
    :meth:`completion_seconds`, ``groups``/``values`` with a breakdown and :meth:`split`.
    """

    levels: np.ndarray
    durations: np.ndarray  # [entrant, k]: seconds from step k to k+1 (0 where not made)
    groups: np.ndarray | None = None
    values: tuple[str, ...] = ()

    def transition_seconds(self, step: int) -> np.ndarray:
        return self.durations[self.levels > step + 1, step]

    def completion_seconds(self) -> np.ndarray:
        return self.durations[self.levels == self.durations.shape[1] + 1].sum(axis=1)

    def split(self, group_of_entrant: np.ndarray, n_groups: int) -> list[FunnelDurations]:
        order = np.argsort(group_of_entrant, kind="stable")
        bounds = np.cumsum(np.bincount(group_of_entrant, minlength=n_groups))[:-1]
        return [FunnelDurations(levels, durations) for levels, durations in
                zip(np.split(self.levels[order], bounds), np.split(self.durations[order], bounds))]


def funnel_query(events: EventsTable, funnel: FunnelDefinition, *, range_start: int, range_end: int,
                 selection: Selection = EVERYONE) -> Query[FunnelDurations]:
    """The furthest step of each user entering in ``[range_start, range_end)`` whom ``selection``
    keeps, with durations and, with a breakdown, the user's value (as of ``range_end``).

    Attempt chains: ``t1`` is a distinct (user, second) step-1 event in the range; ``t{k+1}`` is
    the earliest step-(k+1) event after ``t{k}`` if it lies within ``t1 + W`` (and within the
    step window of ``t{k}``), else 0, and a 0 stays 0 (timestamps are after 1970, so 0 is free).
    Per user, the attempt with the most steps wins, the earliest of those on a tie. The selection
    joins the per-user outcomes, the few rows left after the attempt chains.
    """
    if range_end < range_start:
        raise ValueError("range_end must not be before range_start")
    bind = Parameters()
    window = bind("window", Parameter.int64(funnel.window_seconds))
    # Later steps may follow the last entry by up to W: [range_start, range_end - 1 + W].
    source = events.rows(bind, start=range_start, end=range_end + funnel.window_seconds)
    step_event = [bind(f"step_{k}", Parameter.string(step.event)) for k, step in enumerate(funnel.steps)]
    step_windows = funnel.step_windows or (None,) * (len(funnel.steps) - 1)

    chain = (f"SELECT DISTINCT user_id, t AS t1 FROM ({source}) "
             f"WHERE event = {step_event[0]} AND t < {bind('range_end', Parameter.int64(range_end))}")
    for step in range(1, len(funnel.steps)):
        current, found = f"t{step}", f"t{step + 1}"
        within = [f"a.{current} != 0", "b.t != 0", f"b.t <= a.t1 + {window}"]
        if step_windows[step - 1] is not None:  # the analysis caps a step window at W as well
            limit = bind(f"step_window_{step}", Parameter.int64(min(step_windows[step - 1], funnel.window_seconds)))
            within.append(f"b.t - a.{current} <= {limit}")
        kept = ", ".join(f"a.t{k} AS t{k}" for k in range(1, step + 1))
        chain = (f"SELECT a.user_id AS user_id, {kept}, if({' AND '.join(within)}, b.t, 0) AS {found} "
                 f"FROM ({chain}) AS a ASOF LEFT JOIN "
                 f"(SELECT user_id, t FROM ({source}) WHERE event = {step_event[step]}) AS b "
                 f"ON a.user_id = b.user_id AND a.{current} < b.t")

    steps = range(1, len(funnel.steps) + 1)
    reached = " + ".join(["1", *(f"(t{k} != 0)" for k in steps[1:])])
    per_user = (
        "SELECT user_id, toUInt32(max(attempt_level)) AS level, "
        "arraySlice(argMax(times, (attempt_level, -t1)), 1, level) AS furthest, "
        "CAST(arrayPopFront(arrayDifference(furthest)) AS Array(UInt32)) AS durations "
        f"FROM (SELECT user_id, t1, [{', '.join(f't{k}' for k in steps)}] AS times, {reached} AS attempt_level "
        f"FROM ({chain})) GROUP BY user_id")
    sql = (f"SELECT grp, level, durations, count() AS users "
           f"FROM ({with_group(per_user, events, bind, selection, end=range_end)}) GROUP BY grp, level, durations")
    return Query(sql, bind.values, lambda rows: _read_funnel(rows, len(funnel.steps), selection))


def _read_funnel(rows: list[Row], n_steps: int, selection: Selection) -> FunnelDurations:
    level = np.array([int(row["level"]) for row in rows], dtype=np.int64)
    users = np.array([int(row["users"]) for row in rows], dtype=np.int64)
    # One row per distinct (group, level, durations); pad durations to n - 1 columns to index by step.
    durations = np.zeros((len(rows), max(n_steps - 1, 0)), dtype=np.int64)
    for index, row in enumerate(rows):
        durations[index, :len(row["durations"])] = row["durations"]
    if np.any(level < 1) or np.any(level > n_steps) or np.any(users < 1):
        raise ValueError("funnel rows out of range")
    groups, values = _user_groups(rows, users, selection)
    return FunnelDurations(np.repeat(level, users), np.repeat(durations, users, axis=0), groups, values)


def _user_groups(rows: list[Row], users: np.ndarray, selection: Selection
                 ) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Per user of an answer whose rows count ``users`` each: its value code, and the values
    (None and none without a breakdown)."""
    if selection.breakdown is None:
        return None, ()
    found = GroupValues.found((str(row["grp"]) for row in rows), selection)
    codes = np.array([found.code(str(row["grp"])) for row in rows], dtype=np.int64)
    return np.repeat(codes, users), found.values


# --- segments -----------------------------------------------------------------------------------

def segment_activity_query(events: EventsTable, *, now: int, meaningful_events: Collection[str] | None = None,
                           feature_events: Mapping[str, str] | None = None,
                           selection: Selection = EVERYONE) -> Query[UserActivity]:
    """L28, L28_prev, R, B, age and gap of every user with a meaningful event up to ``now`` whom
    ``selection`` keeps, with each one's breakdown value (as of ``now + 1``, every event up to now).

    Rows are distinct (value, measures) combinations with their number of users; the result lists
    users in an arbitrary order under synthetic codes ``0..n-1`` (the measures are all the rules
    need). ``gap`` travels doubled (the sum of the two middle gaps), an integer, exactly halved here.
    """
    bind = Parameters()
    today = f"intDiv({bind('now', Parameter.int64(now))}, {DAY_SECONDS})"
    source = events.rows(bind, end=now + 1)
    meaningful = _meaningful(bind, meaningful_events)
    if feature_events is None:  # every meaningful event name is a feature of its own
        feature, used = "event", "meaningful"
    else:  # feature codes 1..k per event name; 0 (the default of arr[0]) for other events
        names = list(dict.fromkeys(feature_events.values()))
        mapped = list(feature_events)
        codes = [names.index(feature_events[event]) + 1 for event in mapped]
        feature = (f"{bind('feature_codes', Parameter.uint32s(codes))}"
                   f"[indexOf({bind('feature_events', Parameter.strings(mapped))}, event)]")
        used = "feature != 0"
    per_user = (
        f"SELECT user_id, arraySort(groupUniqArrayIf(days_ago, meaningful AND days_ago < {LOOKBACK_DAYS})) AS days, "
        f"arrayCount(d -> d < {WINDOW_DAYS}, days) AS l28, "
        f"arrayCount(d -> d >= {WINDOW_DAYS} AND d < {2 * WINDOW_DAYS}, days) AS l28_prev, "
        "minIf(days_ago, meaningful) AS recency, "
        f"uniqExactIf(feature, {used} AND days_ago < {WINDOW_DAYS}) AS breadth, "
        "max(days_ago) AS age, "
        "arraySort(arrayPopFront(arrayDifference(days))) AS gaps, "
        "if(empty(gaps), 0, gaps[intDiv(length(gaps) - 1, 2) + 1] + gaps[intDiv(length(gaps), 2) + 1]) AS gap_doubled "
        f"FROM (SELECT user_id, {today} - intDiv(t, {DAY_SECONDS}) AS days_ago, {meaningful} AS meaningful, "
        f"{feature} AS feature FROM ({source})) "
        "GROUP BY user_id HAVING countIf(meaningful) > 0")
    measures = "l28, l28_prev, recency, breadth, age, gap_doubled"
    sql = (f"SELECT grp, {measures}, count() AS users "
           f"FROM ({with_group(per_user, events, bind, selection, end=now + 1)}) GROUP BY grp, {measures}")
    return Query(sql, bind.values, lambda rows: _read_activity(rows, selection))


def _read_activity(rows: list[Row], selection: Selection) -> UserActivity:
    users = np.array([int(row["users"]) for row in rows], dtype=np.int64)

    def column(name: str) -> np.ndarray:
        return np.repeat(np.array([int(row[name]) for row in rows], dtype=np.int64), users)

    gap_doubled = column("gap_doubled")
    gap = np.where(gap_doubled > 0, gap_doubled / 2.0, np.nan)  # 0: fewer than two active days
    groups, values = _user_groups(rows, users, selection)
    return UserActivity(users=np.arange(int(users.sum()), dtype=np.int64), l28=column("l28"),
                        l28_prev=column("l28_prev"), recency=column("recency"), breadth=column("breadth"),
                        age=column("age"), gap=gap, groups=groups, values=values)


# --- user counts --------------------------------------------------------------------------------

def user_counts_query(events: EventsTable, *, start: int, end: int, meaningful_events: Collection[str] | None = None,
                      selection: Selection = EVERYONE) -> Query[UserCounts]:
    """Users seen before ``end`` (any event), and users with a meaningful event in ``[start, end)``,
    of the users ``selection`` keeps (values as of ``end``); one row per breakdown value."""
    bind = Parameters()
    source = events.rows(bind, end=end)
    per_user = (f"SELECT user_id, max(t >= {bind('start', Parameter.int64(start))} AND "
                f"{_meaningful(bind, meaningful_events)}) AS is_active FROM ({source}) GROUP BY user_id")
    sql = (f"SELECT grp, count() AS total, countIf(is_active) AS active "
           f"FROM ({with_group(per_user, events, bind, selection, end=end)}) GROUP BY grp")
    return Query(sql, bind.values, lambda rows: _read_counts(rows, selection))


def _read_counts(rows: list[Row], selection: Selection) -> UserCounts:
    counts = {str(row["grp"]): (int(row["total"]), int(row["active"])) for row in rows}
    total, active = sum(total for total, _ in counts.values()), sum(active for _, active in counts.values())
    # A group has a row only with users in it, so every value listed has total > 0.
    return UserCounts(total=total, active=active, by_value=None if selection.breakdown is None else counts)


def feature_users_query(events: EventsTable, event_names: Collection[str], *, start: int, end: int,
                        selection: Selection = EVERYONE) -> Query[FeatureUsers]:
    """Distinct users per event name in ``[start, end)`` of the users ``selection`` keeps (values
    as of ``end``), per value with a breakdown; 0 for names without events."""
    names = list(dict.fromkeys(event_names))
    bind = Parameters()
    source = events.rows(bind, start=start, end=end)
    users = (f"SELECT DISTINCT event, user_id FROM ({source}) "
             f"WHERE has({bind('feature_events', Parameter.strings(names))}, event)")
    sql = (f"SELECT grp, event, count() AS users "
           f"FROM ({with_group(users, events, bind, selection, end=end)}) GROUP BY grp, event")

    def read(rows: list[Row]) -> FeatureUsers:
        by_value: dict[str, dict[str, int]] = {}
        for row in rows:
            by_value.setdefault(str(row["grp"]), dict.fromkeys(names, 0))[str(row["event"])] = int(row["users"])
        users = {name: sum(counts[name] for counts in by_value.values()) for name in names}
        return FeatureUsers(users, by_value if selection.breakdown is not None else None)

    return Query(sql, bind.values, read)


def feature_dates_query(events: EventsTable, event_names: Collection[str], *, end: int
                        ) -> Query[dict[str, tuple[int, int] | None]]:
    """First and last time of each event name before ``end``; None for names without events."""
    names = list(dict.fromkeys(event_names))
    bind = Parameters()
    source = events.rows(bind, end=end)
    sql = (f"SELECT event, min(t) AS first, max(t) AS last FROM ({source}) "
           f"WHERE has({bind('feature_events', Parameter.strings(names))}, event) GROUP BY event")

    def read(rows: list[Row]) -> dict[str, tuple[int, int] | None]:
        found = {str(row["event"]): (int(row["first"]), int(row["last"])) for row in rows}
        return {name: found.get(name) for name in names}

    return Query(sql, bind.values, read)


def daily_users_query(events: EventsTable, event_names: Collection[str], *, start: int, end: int,
                      meaningful_events: Collection[str] | None = None) -> Query[DailyUsers]:
    """Distinct users per UTC day of ``[start, end)`` (``start`` a UTC midnight): with a meaningful
    event (slot 0), and with each event name (slot ``k`` for the ``k``-th, 1-based as ``indexOf``).

    An event counts in at most two slots (meaningful, and its own name's), so each one becomes an
    array of its slots, joined out, and the distinct users are counted per ``(day, slot)``.
    """
    if start % DAY_SECONDS:
        raise ValueError("daily counts start at a UTC midnight")
    names = list(dict.fromkeys(event_names))
    n_days = max(0, -(-(end - start) // DAY_SECONDS))
    bind = Parameters()
    source = events.rows(bind, start=start, end=end)
    sql = (
        "SELECT day, slot, uniqExact(user_id) AS users FROM ("
        f"SELECT intDiv(t - {bind('start', Parameter.int64(start))}, {DAY_SECONDS}) AS day, user_id, "
        f"{_meaningful(bind, meaningful_events)} AS meaningful, "
        f"toInt64(indexOf({bind('daily_events', Parameter.strings(names))}, event)) AS named "
        f"FROM ({source})) "
        "ARRAY JOIN arrayFilter(s -> s >= 0, [if(meaningful, 0, -1), if(named > 0, named, -1)]) AS slot "
        "GROUP BY day, slot"
    )

    def read(rows: list[Row]) -> DailyUsers:
        counts = np.zeros((n_days, len(names) + 1), dtype=np.int64)
        for row in rows:
            counts[int(row["day"]), int(row["slot"])] = int(row["users"])
        return DailyUsers.of(counts.tolist(), names)

    return Query(sql, bind.values, read)
