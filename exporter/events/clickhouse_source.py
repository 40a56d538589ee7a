"""The identified events source on ClickHouse: the heavy work pushed down (docs/upstreams.md#identified-events).

Answers the questions of :class:`~exporter.events.backend.EventsBackend` with one query each,
built by :mod:`exporter.events.clickhouse_queries`, over ClickHouse's HTTP interface on the
shared :class:`~exporter.sources.http.UpstreamClient` (timeouts, retries, size limit, request
counts, secrets kept out of errors). Each query is a ``POST /`` whose body is the SQL and whose
URL carries:

- ``param_<name>`` for every value in the query: ClickHouse query parameters, which the server
  parses as values of their declared type, never as SQL;
- ``readonly=1``: the server refuses anything but reading, whatever a query says;
- ``max_execution_time``: the server stops a query when this client stops waiting for it
  (``events.query_timeout_seconds``, validated below the scrape deadline), so an abandoned query
  does not keep running on a shared server;
- ``wait_end_of_query=1``: the server buffers the (small) result, so an error in the middle of
  a query is an HTTP error status and not a 200 with an exception appended to the rows.

The user and password travel in the ``X-ClickHouse-User`` / ``X-ClickHouse-Key`` headers, not in
the URL (which proxies and servers log), and the password never appears in an error.

Answers are ``FORMAT JSONEachRow``. Every result is an aggregate, small by construction, so the
speed of parsing does not matter; what does is that JSONEachRow names every field (an answer of
another shape fails loudly instead of being misread), carries arrays natively, and needs neither
the per-type binary layouts of ``RowBinary`` (a type mismatch there reads garbage, silently) nor
the escaping rules of ``TSV``. ClickHouse quotes 64-bit integers in JSON by default; the readers
take them with ``int()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from ..analysis.adoption import FeatureUsers
from ..analysis.breakdowns import EVERYONE, Selection
from ..analysis.experiments.event_metrics import ExperimentMetricsSettings, ExposureSums
from ..analysis.funnels import FunnelDefinition
from ..analysis.retention import (
    IntervalGrid,
    LifecycleCounts,
    RetentionCounts,
    RetentionQuery,
    StickinessCounts,
)
from ..analysis.segments import UserActivity
from ..analysis.usage import DailyUsers, UserCounts
from ..config import EventsConfig
from ..health import HealthRegistry
from ..sources.http import ClientSettings, HttpFailure, ResponseFormat, UpstreamClient
from .clickhouse_exposures import exposure_sums_query
from .clickhouse_queries import (
    EventsTable,
    FunnelDurations,
    Query,
    daily_users_query,
    feature_dates_query,
    feature_users_query,
    funnel_query,
    segment_activity_query,
    user_counts_query,
)
from .clickhouse_retention import lifecycle_query, retention_query, stickiness_query

T = TypeVar("T")
SOURCE = "events"
FORMAT = "JSONEachRow"

MAX_CONCURRENCY = 4  # queries in flight; each already runs on every core of the server
MAX_RETRIES = 2  # for connection errors and 502/503/504, within the query timeout
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # results are aggregates: anything near this is a wrong query

# UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
AUTHENTICATION_ERRORS = frozenset({192, 193, 194, 516})
UNKNOWN_SETTING = 115
_EXCEPTION = re.compile(r"Code: (\d+)[.,]\s*(?:e\.displayText\(\) = )?(?:DB::Exception: )?(.*)", re.DOTALL)
_EXCEPTION_TAIL = re.compile(r"(, e\.what\(\) = .*|\s*\(version [^)]*\))\s*$", re.DOTALL)
MAX_MESSAGE_CHARS = 300


def _json_rows(body: bytes) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in body.splitlines() if line.strip()]
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("a row is not a JSON object")
    return rows


JSON_EACH_ROW = ResponseFormat(FORMAT, _json_rows)


def events_table(config: EventsConfig) -> EventsTable:
    """The configured table, read through the preset's mapping or the configured columns."""
    if config.preset == "plausible_events_v2":
        return EventsTable.plausible_events_v2(config.database, config.table_name,
                                               user_id_property=config.user_id_property or "")
    columns = config.columns
    return EventsTable.mapped(config.database, config.table_name, user_id=columns.user_id, event=columns.event,
                              timestamp=columns.timestamp, properties=columns.properties)


class ClickHouseEventsSource(UpstreamClient):
    """The events in a ClickHouse table; every question is one health-tracked query."""

    kind = "clickhouse"
    # A 500 is the query's own error (ClickHouse's default status), which another try repeats;
    # 502-504 come from proxies or an overloaded server and may pass.
    retryable_statuses = frozenset({502, 503, 504})

    def __init__(self, config: EventsConfig, health: HealthRegistry) -> None:
        timeout = config.query_timeout_seconds
        headers = {"X-ClickHouse-User": config.user}
        if config.password:
            headers["X-ClickHouse-Key"] = config.password.reveal()
        super().__init__(SOURCE, ClientSettings(config.url or "", timeout, timeout, MAX_CONCURRENCY, MAX_RETRIES,
                                                MAX_RESPONSE_BYTES),
                         health, headers=headers, secrets=[config.password])
        self.table = events_table(config)
        self.user = config.user
        self._config = config
        self._settings = {"readonly": "1", "max_execution_time": f"{timeout:g}", "wait_end_of_query": "1"}

    # -- EventsBackend ---------------------------------------------------------------------------

    async def funnel_reach(self, funnel: FunnelDefinition, *, range_start: int, range_end: int,
                           selection: Selection = EVERYONE) -> FunnelDurations:
        return await self.select(funnel_query(self.table, funnel, range_start=range_start, range_end=range_end,
                                              selection=selection))

    async def segment_activity(self, *, now: int, meaningful_events: Collection[str] | None = None,
                               feature_events: Mapping[str, str] | None = None,
                               selection: Selection = EVERYONE) -> UserActivity:
        return await self.select(segment_activity_query(self.table, now=now, meaningful_events=meaningful_events,
                                                        feature_events=feature_events, selection=selection))

    async def user_counts(self, *, start: int, end: int, meaningful_events: Collection[str] | None = None,
                          selection: Selection = EVERYONE) -> UserCounts:
        return await self.select(user_counts_query(self.table, start=start, end=end,
                                                   meaningful_events=meaningful_events, selection=selection))

    async def feature_users(self, event_names: Collection[str], *, start: int, end: int,
                            selection: Selection = EVERYONE) -> FeatureUsers:
        if not event_names:
            return FeatureUsers({}, None if selection.breakdown is None else {})
        return await self.select(feature_users_query(self.table, event_names, start=start, end=end,
                                                     selection=selection))

    async def feature_dates(self, event_names: Collection[str], *, end: int) -> dict[str, tuple[int, int] | None]:
        if not event_names:
            return {}
        return await self.select(feature_dates_query(self.table, event_names, end=end))

    async def daily_users(self, event_names: Collection[str], *, start: int, end: int,
                          meaningful_events: Collection[str] | None = None) -> DailyUsers:
        return await self.select(daily_users_query(self.table, event_names, start=start, end=end,
                                                   meaningful_events=meaningful_events))

    async def retention_counts(self, query: RetentionQuery, grid: IntervalGrid,
                               selection: Selection = EVERYONE) -> RetentionCounts:
        return await self.select(retention_query(self.table, query, grid, selection))

    async def lifecycle_counts(self, grid: IntervalGrid, selection: Selection = EVERYONE) -> LifecycleCounts:
        return await self.select(lifecycle_query(self.table, grid, selection))

    async def stickiness_counts(self, *, now: int, selection: Selection = EVERYONE) -> StickinessCounts:
        return await self.select(stickiness_query(self.table, now=now, selection=selection))

    def details(self) -> dict[str, Any]:
        """Facts for ``/health``: where the events are read from (never the credentials)."""
        config = self._config
        facts = {"kind": self.kind, "url": config.url, "table": f"{config.database}.{config.table_name}",
                 "query_timeout_seconds": config.query_timeout_seconds}
        if config.preset:
            facts |= {"preset": config.preset, "user_id_property": config.user_id_property}
        return facts

    # -- queries -----------------------------------------------------------------------------------

    async def select(self, query: Query[T]) -> T:
        """Run ``query`` and read its rows; health-tracked as source ``events``."""
        return await self.health.track(SOURCE, lambda: self._select(query))

    async def _select(self, query: Query[T]) -> T:
        params = self._settings | {f"param_{name}": parameter.text for name, parameter in query.parameters.items()}
        rows = await self.request("POST", "/", params=params, data=f"{query.sql} FORMAT {FORMAT}".encode(),
                                  response_format=JSON_EACH_ROW)
        try:
            return query.read(rows)
        except (KeyError, TypeError, ValueError) as error:
            raise self.error(f"the answer does not have the expected shape ({type(error).__name__})",
                             code="invalid_response") from None

    def describe_failure(self, failure: HttpFailure) -> str:
        """ClickHouse's own exception text (``Code: N. DB::Exception: ...``), shortened."""
        match = _EXCEPTION.search(failure.text)
        if match is None:
            return super().describe_failure(failure)
        code, message = int(match[1]), _EXCEPTION_TAIL.sub("", match[2].strip())
        if code in AUTHENTICATION_ERRORS:
            return (f"authentication failed for ClickHouse user {self.user!r} (HTTP {failure.status}, code {code}): "
                    "check events.user and events.password")
        if code == UNKNOWN_SETTING and "param_" in message:
            return ("this ClickHouse server does not support query parameters ({name:Type}), which every query "
                    "of this service uses: upgrade it to a release from 2019 or later")
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "..."
        return f"ClickHouse error {code} (HTTP {failure.status}): {message}"

    async def exposure_sums(self, settings: ExperimentMetricsSettings, *, end: int,
                            experiment_keys: Mapping[str, str] | None = None) -> ExposureSums:
        """EventsBackend: exposures and per-arm metric sums in one query, the exposures' experiment
        and variant read from the properties map column (``events.columns.properties``)."""
        return await self.select(exposure_sums_query(self.table, settings, end=end,
                                                     properties=self._config.columns.properties,
                                                     experiment_keys=experiment_keys))
