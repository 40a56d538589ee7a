"""A ClickHouse HTTP interface on loopback whose SQL runs on the real ClickHouse engine (chdb).

The engine is the current ClickHouse, in-process (``chdb``); :class:`ClickHouseHttpFront` is an
aiohttp server that speaks the part of ClickHouse's HTTP interface the service uses, the way the
server does: ``POST /`` with the query in the body; ``param_<name>`` URL parameters handed to the
engine as query parameters (the engine parses them, as the server would); ``database``; the
other URL parameters applied as settings (``readonly``, ``max_execution_time``, ...);
credentials from ``X-ClickHouse-User`` / ``X-ClickHouse-Key``; an engine exception answered with
``Code: N. DB::Exception: ...`` and the HTTP status the server gives that code
(``exceptionCodeToHTTPStatus`` in ClickHouse's source). Every request is recorded, so tests can
show what travelled in the SQL and what in the parameters.

chdb opens one database directory per process and one connection at a time, and takes settings
in the connection string: :class:`ChdbEngine` runs each statement on a connection carrying that
statement's settings, under a lock. Opening one costs about a tenth of a second, so the connection
is kept while statements keep the same directory and settings (the service sends the same settings
with every query), and closed before one with others is opened. It imports chdb when it is built,
so that tests can skip without chdb first (``tests.tools.require_chdb``).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

USER = "dashboard"
PASSWORD = "pa$$w0rd-'\";--\\"  # a password that would break naive quoting, and must never show

# HTTP interface parameters that are not settings (results are always buffered here, as with
# wait_end_of_query=1; the service names every table with its database).
_NOT_SETTINGS = {"database", "query", "default_format", "wait_end_of_query", "user", "password", "query_id"}
_CODE = re.compile(r"Code: (\d+)")
# The statuses ClickHouse's HTTP handler gives the exception codes this fake can meet.
_STATUS_OF_CODE = {
    194: 401,  # REQUIRED_PASSWORD
    192: 403, 193: 403, 516: 403, 497: 403,  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, ACCESS_DENIED
    6: 400, 25: 400, 26: 400, 27: 400, 36: 400, 41: 400, 53: 400, 62: 400,  # parse errors, BAD_ARGUMENTS, SYNTAX
    46: 404, 47: 404, 60: 404, 81: 404, 115: 404,  # UNKNOWN_FUNCTION/IDENTIFIER/TABLE/DATABASE/SETTING
    159: 408,  # TIMEOUT_EXCEEDED
}


class EngineError(Exception):
    """The engine refused a statement; the message is ClickHouse's (``Code: N. DB::Exception: ...``)."""

    @property
    def code(self) -> int:
        match = _CODE.search(str(self))
        return int(match[1]) if match else 1000


class ChdbEngine:
    """ClickHouse in-process, on one database directory."""

    # chdb's one connection in this process, whichever engine opened it: (connection string, connection).
    _open: tuple[str, Any] | None = None
    _lock = threading.Lock()

    def __init__(self, directory: Path) -> None:
        import chdb  # only once an engine is built: importing it costs seconds and half a gigabyte

        self._chdb = chdb
        self.directory = directory

    def execute(self, sql: str, *, settings: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                output_format: str = "TabSeparated") -> bytes:
        """Run one statement (its own FORMAT clause wins over ``output_format``); the output bytes."""
        target = f"file:{self.directory}/db"
        if settings:  # chdb takes settings in the connection string, for that connection only
            target += "?" + "&".join(f"{name}={value}" for name, value in settings.items())
        with ChdbEngine._lock:
            try:
                return self._connection(target).query(sql, output_format, params=dict(params or {})).bytes()
            except Exception as error:  # chdb raises RuntimeError or its own ChdbError
                raise EngineError(str(error)) from None

    def _connection(self, target: str) -> Any:
        """The open connection if it is to ``target``; otherwise it is closed and one to ``target`` opened."""
        if ChdbEngine._open is None or ChdbEngine._open[0] != target:
            if ChdbEngine._open is not None:
                ChdbEngine._open[1].close()
                ChdbEngine._open = None
            ChdbEngine._open = (target, self._chdb.connect(target))
        return ChdbEngine._open[1]

    def insert_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert JSON-able rows (values travel as JSON data, not as SQL)."""
        lines = "\n".join(json.dumps(row) for row in rows)
        if lines:
            self.execute(f"INSERT INTO {table} FORMAT JSONEachRow\n{lines}")

    def create_events_table(self, table: str, events: Iterable[Sequence[Any]], *,
                            timestamp_type: str = "DateTime") -> None:
        """A plain events table (``user_id``, ``event``, ``timestamp``, ``properties``) holding
        ``events``: (user, event, epoch seconds) each, optionally followed by its properties as
        ``(name, value)`` pairs."""
        self.execute(f"DROP TABLE IF EXISTS {table}")
        self.execute(f"CREATE TABLE {table} (user_id String, event LowCardinality(String), timestamp {timestamp_type}, "
                     "properties Map(String, String)) ENGINE = MergeTree ORDER BY (event, timestamp)")
        self.insert_rows(table, ({"user_id": user, "event": event, "timestamp": clickhouse_datetime(ts),
                                  "properties": dict(rest[0]) if rest else {}} for user, event, ts, *rest in events))

    def create_plausible_events_v2(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """A table shaped like Plausible's ``events_v2`` (its key columns, types, ordering key and
        partitioning; the attribution columns are left out), holding ``rows``."""
        self.execute(f"DROP TABLE IF EXISTS {table}")
        self.execute(
            f"CREATE TABLE {table} (`timestamp` DateTime, `name` LowCardinality(String), `site_id` UInt64, "
            "`user_id` UInt64, `session_id` UInt64, `hostname` String, `pathname` String, "
            "`meta.key` Array(String), `meta.value` Array(String)) ENGINE = MergeTree "
            "PARTITION BY toYYYYMM(timestamp) PRIMARY KEY (site_id, toDate(timestamp), name, user_id) "
            "ORDER BY (site_id, toDate(timestamp), name, user_id, timestamp)")
        self.insert_rows(table, ({**row, "timestamp": clickhouse_datetime(row["timestamp"])} for row in rows))


def clickhouse_datetime(epoch_seconds: int | float) -> str:
    """``YYYY-MM-DD hh:mm:ss[.fff]`` in UTC, the text ClickHouse reads into DateTime(64) columns."""
    moment = datetime.fromtimestamp(epoch_seconds, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "")


@dataclass(frozen=True)
class RecordedRequest:
    sql: str
    url_parameters: dict[str, str]
    headers: dict[str, str]
    status: int
    response_bytes: int
    response_rows: int  # lines of the body: rows, for the row-per-line formats the service uses


@dataclass
class ClickHouseHttpFront:
    """ClickHouse's HTTP interface over :class:`ChdbEngine`, for the aiohttp test server."""

    engine: ChdbEngine
    users: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    requests: list[RecordedRequest] = field(default_factory=list)
    delay_seconds: float = 0.0  # before answering: a slow server

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._query)
        return app

    async def _query(self, request: web.Request) -> web.Response:
        sql = await request.text()
        parameters = dict(request.query)
        response = await self._answer(request, sql, parameters)
        body = response.body or b""
        self.requests.append(RecordedRequest(sql, parameters, dict(request.headers), response.status, len(body),
                                             body.count(b"\n")))
        return response

    async def _answer(self, request: web.Request, sql: str, parameters: dict[str, str]) -> web.Response:
        user = request.headers.get("X-ClickHouse-User", "default")
        if self.users.get(user) != request.headers.get("X-ClickHouse-Key", ""):
            return _exception(516, f"{user}: Authentication failed: password is incorrect, or there is no user "
                                   "with such name. (AUTHENTICATION_FAILED)")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        params = {name.removeprefix("param_"): value for name, value in parameters.items() if name.startswith("param_")}
        settings = {name: value for name, value in parameters.items()
                    if name not in _NOT_SETTINGS and not name.startswith("param_")}
        try:
            body = await asyncio.to_thread(self.engine.execute, sql, settings=settings, params=params)
        except EngineError as error:
            return _exception(error.code, str(error).split("DB::Exception: ", 1)[-1])
        return web.Response(body=body, content_type="application/json")


def _exception(code: int, message: str) -> web.Response:
    return web.Response(status=_STATUS_OF_CODE.get(code, 500), text=f"Code: {code}. DB::Exception: {message}\n",
                        headers={"X-ClickHouse-Exception-Code": str(code)})
