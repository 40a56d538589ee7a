"""``reports:`` and ``smtp:`` in the configuration, declared for exporter.typed_mapping's ``build``.

::

    reports:
      - name: weekly
        schedule: weekly MON 08:00      # or "daily 07:30"; UTC
        time_range: 7d                  # default: the schedule's period (daily 24h, weekly 7d)
        recipients: [team@example.com]
        formats: [pdf, xlsx, csv]       # default [pdf]
    smtp:
      host: smtp.example.com
      port: 587
      starttls: true
      user: analytics
      password_file: /run/secrets/smtp_password
      sender: Analytics <analytics@example.com>

docs/reports.md describes every key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Literal

from exporter.secrets import Secret
from exporter.timeranges import TimeRange

from .schedule import Schedule

Format = Literal["pdf", "xlsx", "csv"]
# A report's name is a URL path segment (/api/v1/reports/{name}/send) and a metric label value.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_RANGES = {"daily": TimeRange.H24, "weekly": TimeRange.D7}


def check_address(text: str, key: str) -> None:
    """``text`` is one mail address, optionally with a display name (``Team <team@example.com>``)."""
    _, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    if "\r" in text or "\n" in text or not local or "." not in domain or " " in address:
        raise ValueError(f"{key}: {text!r} is not a mail address")


@dataclass(frozen=True)
class ReportConfig:
    name: str
    schedule: str
    recipients: tuple[str, ...]
    time_range: str | None = None
    formats: tuple[Format, ...] = ("pdf",)

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r} must be 1 to 64 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        try:
            Schedule.parse(self.schedule)
        except ValueError as error:
            raise ValueError(f"schedule: {error}") from None
        if self.time_range is not None and self.time_range not in TimeRange.names():
            raise ValueError(f"time_range: {self.time_range!r} is not one of {', '.join(TimeRange.names())}")
        if not self.recipients:
            raise ValueError("recipients: a report needs at least one recipient")
        for index, recipient in enumerate(self.recipients):
            check_address(recipient, f"recipients[{index}]")
        duplicates = sorted({form for form in self.formats if self.formats.count(form) > 1})
        if duplicates:
            raise ValueError(f"formats: {duplicates[0]} is listed more than once")

    @functools.cached_property
    def parsed_schedule(self) -> Schedule:
        return Schedule.parse(self.schedule)

    @property
    def range(self) -> TimeRange:
        """The range the report covers: as configured, or the schedule's period."""
        if self.time_range is not None:
            return TimeRange(self.time_range)
        return DEFAULT_RANGES["daily" if self.parsed_schedule.weekday is None else "weekly"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None = None
    port: int = 587
    starttls: bool = True
    user: str | None = None
    password: Secret | None = None
    sender: str | None = None
    timeout_seconds: float = 30.0  # per network operation (connect, each command)
    max_attempts: int = 5  # tries of one send, transient failures apart by a jittered back-off

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535 (got {self.port})")
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive (got {self.timeout_seconds})")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more (got {self.max_attempts})")
        if self.sender is not None:
            check_address(self.sender, "sender")
        if bool(self.user) != bool(self.password):
            raise ValueError("user and password (or password_file) go together: set both or neither")
        if self.user and not self.starttls:
            raise ValueError("user is set but starttls is false: the password would cross the network in clear")

    def missing_settings(self) -> list[str]:
        """Settings without which no report can be sent (empty when mail can go out)."""
        return [key for key, value in (("host", self.host), ("sender", self.sender)) if not value]


def check_reports(reports: Sequence[ReportConfig], smtp: SmtpConfig) -> None:
    """What holds between reports and SMTP: unique names, and a mail server when there are reports."""
    names = [report.name for report in reports]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"reports: the name {duplicates[0]!r} is used more than once")
    missing = smtp.missing_settings()
    if reports and missing:
        raise ValueError(f"reports are configured, but smtp.{missing[0]} is not set: they could never be sent")
