"""The report schedule: each configured report at its next run, in UTC (docs/reports.md#scheduled-reports).

One task, from the application's start to its shutdown: it sleeps until the soonest report's
next run, runs every report due then (:meth:`~api.reports.ReportDesk.run_scheduled`: composed
now, sent in the background), and sleeps again. It never holds up serving: composing awaits
the dashboard and renders in a worker thread, and sending runs on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from .reports import ReportDesk

log = logging.getLogger(__name__)

# The schedule is wall-clock time, but a sleep counts time the machine runs: it naps at most this
# long and looks at the clock again, so a suspended machine or a corrected clock still runs a
# report within a minute of its time.
MAX_NAP_SECONDS = 60.0


class ReportScheduler:
    def __init__(self, desk: ReportDesk, clock: Callable[[], float], *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.desk, self.clock, self.sleep = desk, clock, sleep
        self.next_runs: dict[str, datetime] = {}  # per report: its next run (for the log and tests)

    async def run(self) -> None:
        """Until cancelled (nothing to do without reports)."""
        reports = list(self.desk.reports.values())
        while reports:
            now = datetime.fromtimestamp(self.clock(), UTC)
            self.next_runs = {report.name: report.parsed_schedule.next_after(now) for report in reports}
            due = min(self.next_runs.values())
            names = [report.name for report in reports if self.next_runs[report.name] == due]
            log.info("next scheduled report%s: %s at %s UTC", "s" if len(names) > 1 else "", ", ".join(names),
                     f"{due:%Y-%m-%d %H:%M}")
            while (remaining := due.timestamp() - self.clock()) > 0:
                await self.sleep(min(remaining, MAX_NAP_SECONDS))
            for name in names:
                await self.desk.run_scheduled(self.desk.reports[name])


SCHEDULER = web.AppKey("scheduler", ReportScheduler)
