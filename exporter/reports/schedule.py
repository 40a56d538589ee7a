"""When a report is sent: ``daily HH:MM`` or ``weekly DAY HH:MM``, always in UTC.

UTC has no daylight-saving jumps, so every run is exactly a day (or a week) after the previous
one and no time is skipped or repeated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # in datetime.weekday() order
ACCEPTED_FORMS = f"'daily HH:MM' or 'weekly DAY HH:MM' (UTC, 24-hour clock; DAY one of {', '.join(DAYS)})"
PATTERN = re.compile(r"(?P<period>daily|weekly)\s+(?:(?P<day>[A-Za-z]{3})\s+)?(?P<hour>\d{2}):(?P<minute>\d{2})")


@dataclass(frozen=True)
class Schedule:
    """A recurring UTC instant: every day at ``hour:minute``, or every week on ``weekday`` (0 = Monday)."""

    hour: int
    minute: int
    weekday: int | None = None  # None: every day

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``daily 07:30`` or ``weekly MON 08:00`` (the day in any case); a ValueError naming the
        accepted forms otherwise."""
        match = PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
        day = (match.group("day") or "").upper() if match else ""
        weekly = match is not None and match.group("period") == "weekly"
        if match is None or weekly != bool(day) or (weekly and day not in DAYS):
            raise ValueError(f"{text!r} is not a schedule; accepted forms: {ACCEPTED_FORMS}")
        hour, minute = int(match.group("hour")), int(match.group("minute"))
        if hour > 23 or minute > 59:
            raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59); accepted forms: {ACCEPTED_FORMS}")
        return cls(hour, minute, DAYS.index(day) if weekly else None)

    @property
    def period(self) -> timedelta:
        return timedelta(days=1 if self.weekday is None else 7)

    def next_after(self, instant: datetime) -> datetime:
        """The first run strictly after ``instant`` (a timezone-aware datetime), in UTC."""
        if instant.tzinfo is None:
            raise ValueError("the instant must be timezone-aware")
        now = instant.astimezone(UTC)
        run = now.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
        if self.weekday is not None:
            run += timedelta(days=(self.weekday - run.weekday()) % 7)
        return run if run > now else run + self.period

    def __str__(self) -> str:
        time = f"{self.hour:02d}:{self.minute:02d}"
        return f"daily {time}" if self.weekday is None else f"weekly {DAYS[self.weekday]} {time}"
