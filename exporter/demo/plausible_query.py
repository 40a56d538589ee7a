"""Plausible's query semantics, evaluated with numpy over a synthetic population.

This is the engine behind the simulated Plausible: it knows nothing about HTTP or either API
generation's syntax. A :class:`Query` (an inclusive UTC time range, metrics, dimensions,
filters) goes in, unordered :class:`Row` objects come out. The semantics follow Plausible's:

* **Visitors** are distinct ``(person, UTC day)`` pairs: Plausible's visitor id is a hash salted
  daily, so a person returning on three days is three visitors in a multi-day total.
* **Events** are page views plus custom events; **visits** are sessions. A session belongs to
  a query when at least one of its events in the range passes the filters (Plausible joins
  sessions to matching events the same way), and to the time bucket where it started.
* A **bounce** is a session of a single event (one page view, nothing else): custom events are
  interactive in Plausible and end a bounce. ``visit_duration`` is the mean time from a
  session's first to its last event. Session facts are taken as of the clock, from the events
  already visible.
* **Goals** are custom-event goals (event name) and page-view goals (path wildcard: ``*``
  within a segment, ``**`` across segments). One event can complete several goals, so a goal
  breakdown counts it under each.
* Filters on ``visit:*`` look at the event's session; ``has_done`` / ``has_not_done`` keep the
  events of sessions that did (not) do something matching the inner filter in the range.

Rounding follows Plausible: ``bounce_rate`` and ``visit_duration`` are whole numbers,
``views_per_visit`` and ``conversion_rate`` have two decimals, ``percentage`` one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import numpy as np

from exporter.demo import catalog
from exporter.demo.population import Population

HOUR = 3_600
DAY = catalog.DAY_SECONDS

GOAL = "event:goal"
PAGE = "event:page"
NAME = "event:name"
SOURCE = "visit:source"
TEAM = "event:props:team"
NONE_LABEL = "(none)"  # Plausible's value for an event without the custom property
EVENT_DIMENSIONS = (GOAL, PAGE, NAME, TEAM)
TIME_DIMENSIONS = ("time:hour", "time:day", "time:week", "time:month")
DIMENSIONS = (*EVENT_DIMENSIONS, SOURCE, *TIME_DIMENSIONS)

EVENT_METRICS = ("visitors", "pageviews", "events")
SESSION_METRICS = ("visits", "bounce_rate", "visit_duration", "views_per_visit")
RATIO_METRICS = ("conversion_rate", "group_conversion_rate", "percentage")
METRICS = (*EVENT_METRICS, *SESSION_METRICS, *RATIO_METRICS)

OPERATORS = ("is", "is_not", "contains", "contains_not", "matches", "matches_not")


@dataclass(frozen=True)
class Condition:
    """``[op, dimension, values]``; negated operators keep the events the positive one drops."""

    op: str
    dimension: str
    values: tuple[str, ...]
    case_sensitive: bool = True


@dataclass(frozen=True)
class AllOf:
    filters: tuple["Filter", ...]


@dataclass(frozen=True)
class AnyOf:
    filters: tuple["Filter", ...]


@dataclass(frozen=True)
class Not:
    filter: "Filter"


@dataclass(frozen=True)
class SessionDid:
    """``has_done`` (``did=True``) or ``has_not_done`` over the session's events in range."""

    filter: "Filter"
    did: bool


Filter = Condition | AllOf | AnyOf | Not | SessionDid


@dataclass(frozen=True)
class Query:
    """One question to the engine. ``first``/``last`` are inclusive epoch seconds (UTC)."""

    first: int
    last: int
    metrics: tuple[str, ...]
    dimensions: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Row:
    dimensions: tuple[str, ...]
    metrics: dict[str, int | float | None]


def goal_filter_values(filters: Sequence[Filter], op: str = "is") -> list[str]:
    """Goal names named by top-level ``op`` conditions on ``event:goal``."""
    return [
        value
        for item in filters
        if isinstance(item, Condition) and item.dimension == GOAL and item.op == op
        for value in item.values
    ]


def wildcard_regex(pattern: str) -> str:
    """Plausible's path wildcard as an anchored regex: ``**`` any text, ``*`` within a segment."""
    parts = (re.escape(part).replace(r"\*", "[^/]*") for part in pattern.split("**"))
    return "^" + ".*".join(parts) + "$"


# ---------------------------------------------------------------------------------------------
# Time buckets


def bucket_ids(dimension: str, ts: np.ndarray) -> np.ndarray:
    """Absolute bucket number of each timestamp (hours, days, ISO weeks or months since 1970)."""
    if dimension == "time:hour":
        return ts // HOUR
    if dimension == "time:day":
        return ts // DAY
    if dimension == "time:week":
        return (ts // DAY + 3) // 7  # day 0 (1970-01-01) was a Thursday; weeks start Monday
    if dimension == "time:month":
        return ts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"not a time dimension: {dimension}")


def _bucket_label(dimension: str, bucket: int, first: int) -> str:
    """Plausible's label of a bucket; a week that began before the range is labelled by the
    range's first day, as Plausible does."""
    if dimension == "time:hour":
        return _utc(bucket * HOUR).strftime("%Y-%m-%d %H:00:00")
    if dimension == "time:day":
        return _utc(bucket * DAY).date().isoformat()
    if dimension == "time:week":
        monday = date(1970, 1, 1) + timedelta(days=bucket * 7 - 3)
        return max(monday, _utc(first).date()).isoformat()
    year, month = divmod(int(bucket), 12)
    return date(1970 + year, month + 1, 1).isoformat()


def time_labels(dimension: str, first: int, last: int) -> list[str]:
    """Every bucket label of the range, empty or not, oldest first."""
    low, high = bucket_ids(dimension, np.array([first, last], dtype=np.int64))
    return [_bucket_label(dimension, bucket, first) for bucket in range(int(low), int(high) + 1)]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc)


# ---------------------------------------------------------------------------------------------
# The indexed site


@dataclass(frozen=True)
class Goal:
    """A goal configured on the site, by display name: a custom event or a page-view pattern."""

    name: str
    event: str | None = None  # custom-event goal
    path_pattern: str | None = None  # page-view goal


def default_goals() -> tuple[Goal, ...]:
    """The goals configured on the simulated site: the platform features plus page-view goals."""
    custom = (Goal(name, event=event) for name, event in catalog.FEATURE_GOALS.items())
    pages = (Goal(name, path_pattern=pattern) for name, pattern in catalog.PAGEVIEW_GOALS.items())
    return (*custom, *pages)


@dataclass(frozen=True)
class _SessionState:
    """Per-session facts as of a clock, from the events visible then."""

    is_bounce: np.ndarray
    duration: np.ndarray
    pageviews: np.ndarray


@dataclass(frozen=True)
class _Rows:
    """The event rows a query aggregates: global event indices, plus a goal per row when the
    query groups by goal (an event completing two goals is two rows)."""

    event: np.ndarray
    goal: np.ndarray | None


class IndexedSite:
    """A population prepared for Plausible queries: label tables, goal bitmasks, sessions."""

    def __init__(self, population: Population, goals: Sequence[Goal] | None = None) -> None:
        self.population = population
        self.goals: tuple[Goal, ...] = tuple(goals if goals is not None else default_goals())
        if len(self.goals) > 62:
            raise ValueError("at most 62 goals fit the per-event goal bitmask")
        p = population
        self._is_pageview = p.event_name == 0
        self._goal_bits = self._event_goal_bits()
        # Plausible's visitor id: the person hashed with a salt that changes every UTC day.
        first_day = int(p.start_ts // DAY)
        n_days = int(p.end_ts // DAY) - first_day + 1
        self._visitor = p.event_user.astype(np.int64) * n_days + (p.event_ts // DAY - first_day)
        # Each session's event timestamps, contiguous and in time order, to read the last
        # visible one without a per-query sort.
        by_session = np.argsort(p.event_session, kind="stable")
        self._session_ts = p.event_ts[by_session]
        self._session_offset = np.concatenate(
            [[0], np.cumsum(np.bincount(p.event_session, minlength=p.n_sessions))[:-1]]
        )
        self._labels: dict[str, tuple[str, ...]] = {
            GOAL: tuple(goal.name for goal in self.goals),
            PAGE: catalog.PAGES,
            NAME: catalog.EVENT_NAMES,
            SOURCE: catalog.SOURCES,
            TEAM: (*catalog.TEAMS, NONE_LABEL),
        }
        self._codes: dict[str, np.ndarray] = {
            PAGE: p.event_path,
            NAME: p.event_name,
            SOURCE: p.event_source,
            # The team is a custom property of custom events; page views do not carry it.
            TEAM: np.where(p.event_name > 0, p.user_team[p.event_user], len(catalog.TEAMS)),
        }

    @property
    def goal_names(self) -> tuple[str, ...]:
        return self._labels[GOAL]

    @property
    def stats_start(self) -> int:
        """Timestamp of the site's first event (Plausible's stats start date for ``all``)."""
        ts = self.population.event_ts
        return int(ts[0]) if len(ts) else self.population.start_ts

    def _event_goal_bits(self) -> np.ndarray:
        p = self.population
        by_name = np.zeros(len(catalog.EVENT_NAMES), dtype=np.int64)
        by_path = np.zeros(len(catalog.PAGES), dtype=np.int64)
        for bit, goal in enumerate(self.goals):
            if goal.event is not None:
                by_name[catalog.EVENT_NAMES.index(goal.event)] |= 1 << bit
            else:
                pattern = re.compile(wildcard_regex(goal.path_pattern or ""))
                for code, path in enumerate(catalog.PAGES):
                    if pattern.match(path):
                        by_path[code] |= 1 << bit
        return by_name[p.event_name] | np.where(self._is_pageview, by_path[p.event_path], 0)

    # -- public queries ------------------------------------------------------------------------

    def realtime_visitors(self, clock: float, minutes: int = 5) -> int:
        """Distinct visitors with an event in the last ``minutes`` up to the clock."""
        ts = self.population.event_ts
        hi = self.population.visible_count(clock)
        lo = int(np.searchsorted(ts, clock - minutes * 60, side="left"))
        return int(len(np.unique(self._visitor[lo:hi])))

    def evaluate(self, query: Query, clock: float) -> list[Row]:
        """Rows of ``query`` as of ``clock`` (events after it do not exist yet), unordered.

        With no dimensions there is always exactly one row (zeros when nothing matched); with
        dimensions, only groups that have data appear (empty time buckets are omitted).
        """
        visible = self.population.visible_count(clock)
        window = self._window(query, visible)
        state = self._session_state(visible)
        mask = self._filter_all(query.filters, window)
        rows = self._rows(window[mask], GOAL in query.dimensions)
        wanted = set(query.metrics)
        if wanted & set(RATIO_METRICS):
            wanted.add("visitors")  # every ratio is a share of visitors
        table = self._aggregate(rows, query, wanted, state)
        if not query.dimensions and not table:
            table[()] = _empty_metrics(wanted)
        self._add_ratios(table, query, clock)
        return [Row(key, {m: metrics[m] for m in query.metrics}) for key, metrics in table.items()]

    # -- evaluation steps ----------------------------------------------------------------------

    def _window(self, query: Query, visible: int) -> np.ndarray:
        ts = self.population.event_ts
        lo = int(np.searchsorted(ts, query.first, side="left"))
        hi = min(int(np.searchsorted(ts, query.last, side="right")), visible)
        return np.arange(lo, max(lo, hi))

    def _session_state(self, visible: int) -> _SessionState:
        p = self.population
        seen = np.bincount(p.event_session[:visible], minlength=p.n_sessions)
        pageviews = np.bincount(
            p.event_session[:visible], weights=self._is_pageview[:visible], minlength=p.n_sessions
        )
        last_seen = self._session_ts[self._session_offset + np.maximum(seen - 1, 0)]
        return _SessionState(
            is_bounce=seen == 1,
            duration=np.where(seen > 0, last_seen - p.session_start, 0),
            pageviews=pageviews,
        )

    def _filter_all(self, filters: Sequence[Filter], window: np.ndarray) -> np.ndarray:
        mask = np.ones(len(window), dtype=bool)
        for item in filters:
            mask &= self._filter(item, window)
        return mask

    def _filter(self, item: Filter, window: np.ndarray) -> np.ndarray:
        if isinstance(item, Condition):
            return self._condition(item, window)
        if isinstance(item, AllOf):
            return self._filter_all(item.filters, window)
        if isinstance(item, AnyOf):
            mask = np.zeros(len(window), dtype=bool)
            for child in item.filters:
                mask |= self._filter(child, window)
            return mask
        if isinstance(item, Not):
            return ~self._filter(item.filter, window)
        sessions = self.population.event_session[window]
        did = np.zeros(self.population.n_sessions, dtype=bool)
        did[sessions[self._filter(item.filter, window)]] = True
        return did[sessions] if item.did else ~did[sessions]

    def _condition(self, condition: Condition, window: np.ndarray) -> np.ndarray:
        negated = condition.op.endswith("_not")
        labels = self._labels[condition.dimension]
        chosen = np.array([_matches(condition, label) for label in labels], dtype=bool)
        if condition.dimension == GOAL:
            bits = sum(1 << bit for bit in np.flatnonzero(chosen))
            positive = (self._goal_bits[window] & bits) != 0
        else:
            positive = chosen[self._codes[condition.dimension][window]]
        return ~positive if negated else positive

    def _rows(self, events: np.ndarray, by_goal: bool) -> _Rows:
        if not by_goal:
            return _Rows(events, None)
        bits = self._goal_bits[events]
        per_goal = [np.flatnonzero(bits & (1 << bit)) for bit in range(len(self.goals))]
        return _Rows(
            events[np.concatenate(per_goal)],
            np.repeat(np.arange(len(self.goals)), [len(rows) for rows in per_goal]),
        )

    def _keys(self, rows: _Rows, query: Query, session_time: bool) -> tuple[np.ndarray, Callable]:
        """One int64 group key per row, and a decoder from keys to dimension label tuples.

        Time buckets come from the event's timestamp, or for session metrics from the start
        of the session (never earlier than the range).
        """
        p = self.population
        key = np.zeros(len(rows.event), dtype=np.int64)
        columns: list[tuple[int, int, Sequence[str]]] = []  # stride, size, labels by code
        stride = 1
        for dimension in reversed(query.dimensions):
            if dimension in TIME_DIMENSIONS:
                ts = p.event_ts[rows.event]
                if session_time:
                    ts = np.maximum(p.session_start[p.event_session[rows.event]], query.first)
                labels: Sequence[str] = time_labels(dimension, query.first, query.last)
                low = bucket_ids(dimension, np.array([query.first]))[0]
                codes = bucket_ids(dimension, ts) - low
            else:
                labels = self._labels[dimension]
                codes = rows.goal if dimension == GOAL else self._codes[dimension][rows.event]
            key += codes.astype(np.int64) * stride
            columns.append((stride, len(labels), labels))
            stride *= len(labels)

        def decode(keys: np.ndarray) -> list[tuple[str, ...]]:
            if not columns:
                return [()] * len(keys)
            decoded = [
                [labels[code] for code in (keys // s % n).tolist()]
                for s, n, labels in reversed(columns)
            ]
            return list(zip(*decoded))

        return key, decode

    def _aggregate(
        self, rows: _Rows, query: Query, wanted: set[str], state: _SessionState
    ) -> dict[tuple, dict]:
        table: dict[tuple, dict] = defaultdict(dict)
        event_metrics = wanted & set(EVENT_METRICS)
        if event_metrics:
            key, decode = self._keys(rows, query, session_time=False)
            groups, group = np.unique(key, return_inverse=True)
            n = len(groups)
            values = {
                "events": np.bincount(group, minlength=n),
                "pageviews": np.bincount(
                    group, weights=self._is_pageview[rows.event], minlength=n
                ).astype(np.int64),
                "visitors": _distinct_per_group(group, self._visitor[rows.event], n),
            }
            columns = {name: values[name].tolist() for name in event_metrics}
            for g, labels in enumerate(decode(groups)):
                table[labels].update({name: column[g] for name, column in columns.items()})
        if wanted & set(SESSION_METRICS):
            key, decode = self._keys(rows, query, session_time=True)
            sessions = self.population.event_session[rows.event].astype(np.int64)
            pairs = np.unique(key * self.population.n_sessions + sessions)
            group_key, session = np.divmod(pairs, self.population.n_sessions)
            groups, group = np.unique(group_key, return_inverse=True)
            n = len(groups)
            visits = np.bincount(group, minlength=n)
            columns = {
                "visits": visits.tolist(),
                "bounce_rate": _per_visit(group, state.is_bounce[session], visits, 100.0, 0),
                "visit_duration": _per_visit(group, state.duration[session], visits, 1.0, 0),
                "views_per_visit": _per_visit(group, state.pageviews[session], visits, 1.0, 2),
            }
            for g, labels in enumerate(decode(groups)):
                table[labels].update({name: column[g] for name, column in columns.items()})
        defaults = _empty_metrics(wanted)
        for metrics in table.values():
            for name, default in defaults.items():
                metrics.setdefault(name, default)
        return dict(table)

    def _add_ratios(self, table: dict[tuple, dict], query: Query, clock: float) -> None:
        """``conversion_rate`` / ``group_conversion_rate`` and ``percentage``: each row's
        visitors over the visitors of a broader query."""
        conversion = [m for m in ("conversion_rate", "group_conversion_rate") if m in query.metrics]
        if conversion:
            # The same question without goal filters and without the goal grouping.
            kept = tuple(i for i, d in enumerate(query.dimensions) if d != GOAL)
            base = Query(
                query.first,
                query.last,
                ("visitors",),
                tuple(query.dimensions[i] for i in kept),
                tuple(f for f in query.filters if not _is_goal_condition(f)),
            )
            totals = {row.dimensions: row.metrics["visitors"] for row in self.evaluate(base, clock)}
            for key, metrics in table.items():
                total = totals.get(tuple(key[i] for i in kept), 0)
                rate = round(100.0 * metrics["visitors"] / total, 2) if total else 0.0
                for name in conversion:
                    metrics[name] = rate
        if "percentage" in query.metrics:
            total_query = replace(query, metrics=("visitors",), dimensions=())
            total = self.evaluate(total_query, clock)[0].metrics["visitors"]
            for metrics in table.values():
                share = 100.0 * metrics["visitors"] / total if total else 0.0
                metrics["percentage"] = round(share, 1)


def _is_goal_condition(item: Filter) -> bool:
    return isinstance(item, Condition) and item.dimension == GOAL


def _empty_metrics(metrics: set[str]) -> dict[str, int | float]:
    """The values of a group with no data (floats where Plausible reports floats)."""
    return {name: (0.0 if name in ("views_per_visit", *RATIO_METRICS) else 0) for name in metrics}


def _matches(condition: Condition, label: str) -> bool:
    """Whether ``label`` satisfies the positive form of ``condition``'s operator."""
    op = condition.op.removesuffix("_not")
    if op == "matches":
        flags = 0 if condition.case_sensitive else re.IGNORECASE
        return any(re.search(value, label, flags) for value in condition.values)
    text = label if condition.case_sensitive else label.lower()
    values = condition.values if condition.case_sensitive else [v.lower() for v in condition.values]
    if op == "is":
        return text in values
    return any(value in text for value in values)


def _distinct_per_group(group: np.ndarray, item: np.ndarray, n_groups: int) -> np.ndarray:
    """How many distinct ``item`` values each group has."""
    if len(group) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    span = int(item.max()) + 1
    pairs = np.unique(group.astype(np.int64) * span + item)
    return np.bincount(pairs // span, minlength=n_groups)


def _per_visit(
    group: np.ndarray, values: np.ndarray, visits: np.ndarray, scale: float, digits: int
) -> list[int | float]:
    """Per group, ``scale`` x the mean of ``values`` over its visits, rounded like Plausible:
    to a whole number when ``digits`` is 0, else to ``digits`` decimals."""
    means = (scale * np.bincount(group, weights=values, minlength=len(visits)) / visits).tolist()
    return [round(m) for m in means] if digits == 0 else [round(m, digits) for m in means]
