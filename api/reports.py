"""The scheduled reports, sent now or on schedule: ``POST /api/v1/reports/{name}/send`` and the
``report`` command (docs/reports.md#scheduled-reports).

A report is the dashboard for its time range, as ``/api/v1/dashboard`` serves it, made into an
email (:func:`exporter.reports.message.report_email`: the summary and the configured formats,
rendered by the exports' own code in a worker thread) and sent through ``smtp:`` with retries
(:func:`exporter.reports.smtp.send`, in a worker thread too). Sending never holds up serving: the
endpoint answers 202 and the send goes on in the background.

The summary compares each headline number with the previous period's: the dashboard of the
report's previous scheduled run, kept in memory. Until there is one (after a start), it says
there is no previous period; a send asked for by hand compares with the last scheduled run
without taking its place.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from exporter.areas.base import Area
from exporter.reports.config import ReportConfig
from exporter.reports.message import Attachment, report_email
from exporter.reports.render import ReportsExtraMissing
from exporter.reports.smtp import Backoff, LoginRefused, SendFailed, send
from exporter.service import AnalyticsService

from .dashboard import build_dashboard
from .errors import ApiError
from .export import dashboard_rows, render_export
from .jsonio import json_response
from .params import parse_query
from .responses import Responses
from .worker import Worker

log = logging.getLogger(__name__)
T = TypeVar("T")

SEND_PATH = "/api/v1/reports/{name}/send"


class UnknownReport(LookupError):
    """No report of that name is configured; the message names the configured ones."""

    def __init__(self, name: str, configured: list[str]) -> None:
        listed = ", ".join(configured) if configured else "none (reports: in the configuration)"
        super().__init__(f"no report named {name[:64]!r}; configured reports: {listed}")


class ReportDesk:
    """Composes and sends the configured reports, keeping each one's previous scheduled dashboard."""

    def __init__(self, service: AnalyticsService, responses: Responses, worker: Worker, *,
                 ssl_context: ssl.SSLContext | None = None, backoff: Backoff = Backoff()) -> None:
        self.service, self.responses, self.worker = service, responses, worker
        self.reports = {report.name: report for report in service.config.reports}
        self.ssl_context, self.backoff = ssl_context, backoff
        self._previous: dict[str, dict[str, Any]] = {}  # per report: the dashboard of its last scheduled run
        self._sends: set[asyncio.Task[None]] = set()
        self._asked: dict[str, asyncio.Task[None]] = {}  # per report: the send asked for by hand, while it runs

    def find(self, name: str) -> ReportConfig:
        report = self.reports.get(name)
        if report is None:
            raise UnknownReport(name, list(self.reports))
        return report

    async def compose(self, report: ReportConfig, *, scheduled: bool = False) -> EmailMessage:
        """The report's email over the dashboard as of now; a scheduled run's dashboard becomes
        the previous period of the next one."""
        dashboard = await build_dashboard(self.service, self.responses, report.range)
        previous = self._previous.get(report.name)
        if scheduled:
            self._previous[report.name] = dashboard
        areas, smtp = self.service.areas, self.service.config.smtp  # smtp.sender is set: reports need it
        date = datetime.fromtimestamp(self.service.clock(), UTC)
        return await self.worker.run(report_email, report, smtp.sender, dashboard, previous,
                                     partial(dashboard_rows, areas), partial(_attachment, areas), date)

    async def deliver(self, report: ReportConfig, message: EmailMessage) -> None:
        """Send ``message`` (retried with back-off); raises :class:`SendFailed` when it could not be."""
        await send(message, self.service.config.smtp, ssl_context=self.ssl_context, backoff=self.backoff)
        self.service.report_outcomes.succeeded(report.name, self.service.clock())
        log.info("report %s sent to %d recipients", report.name, len(report.recipients))

    def send_now(self, report: ReportConfig) -> None:
        """Compose and send ``report`` in the background; one asked for while the last one asked
        for is still under way joins it (the recipients get one email)."""
        running = self._asked.get(report.name)
        if running is None or running.done():
            self._asked[report.name] = self._background(self._compose_and_deliver(report))

    async def run_scheduled(self, report: ReportConfig) -> None:
        """A scheduled run: composed now (the schedule waits for it, so that the next run compares
        with this one), then sent in the background (retries may take minutes)."""
        message = await self._quietly(report, self.compose(report, scheduled=True))
        if message is not None:
            self._background(self._quietly(report, self.deliver(report, message)))

    async def close(self) -> None:
        """At shutdown: end the sends still under way (their retries with them)."""
        for task in self._sends:
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)

    async def _compose_and_deliver(self, report: ReportConfig) -> None:
        message = await self._quietly(report, self.compose(report))
        if message is not None:
            await self._quietly(report, self.deliver(report, message))

    @staticmethod
    async def _quietly(report: ReportConfig, step: Awaitable[T]) -> T | None:
        """``await step``, or None with the reason logged: nobody waits for a background send."""
        try:
            return await step
        except LoginRefused as error:
            log.error("report %s was not sent: configuration error: %s", report.name, error)
        except (SendFailed, ReportsExtraMissing) as error:
            log.error("report %s was not sent: %s", report.name, error)
        except Exception:  # noqa: BLE001 - a bug in one report must not end the schedule or the service
            log.exception("report %s was not sent", report.name)
        return None

    def _background(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return task


def _attachment(areas: Mapping[str, Area], dashboard: Mapping[str, Any], form: str) -> Attachment:
    """The dashboard as ``form``, exactly as ``/api/v1/export/{form}`` downloads it."""
    exported = render_export(areas, dashboard, form)
    return Attachment(exported.filename, exported.content_type, exported.body)


REPORTS = web.AppKey("reports", ReportDesk)


async def send_report(request: web.Request) -> web.Response:
    parse_query(request, {})
    desk = request.app[REPORTS]
    try:
        report = desk.find(request.match_info["name"])
    except UnknownReport as error:
        raise ApiError(404, "unknown_report", str(error)) from None
    desk.send_now(report)
    return json_response({"report": report.name, "status": "sending"}, status=202)
