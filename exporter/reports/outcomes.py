"""When each report was last sent, for ``analytics_report_last_success_timestamp_seconds{report}``."""

from __future__ import annotations


class ReportOutcomes:
    """The clock time of each report's last successful send in this process (the SMTP server
    accepted the message); ``revision`` changes with every success, so a kept ``/metrics``
    response is not reused past one."""

    def __init__(self) -> None:
        self.last_success: dict[str, float] = {}
        self.revision = 0

    def succeeded(self, report: str, at: float) -> None:
        self.last_success[report] = at
        self.revision += 1
