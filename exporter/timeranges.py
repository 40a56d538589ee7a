"""The public time ranges (``1h`` ... ``90d``) and the concrete windows they resolve to.

A range is resolved against "now" in the site's timezone, because Plausible reports every number
in the site's timezone. Sub-day ranges are rolling windows bucketed by hour; day ranges are the N
calendar days ending today (today included, so the newest bucket is partial), bucketed by day.
Both Plausible API generations can express these windows, so the two agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo


class TimeRange(str, enum.Enum):
    H1 = "1h"
    H6 = "6h"
    H24 = "24h"
    D7 = "7d"
    D30 = "30d"
    D90 = "90d"

    @property
    def duration(self) -> timedelta:
        number, unit = int(self.value[:-1]), self.value[-1]
        return timedelta(hours=number) if unit == "h" else timedelta(days=number)

    @property
    def is_sub_day(self) -> bool:
        return self.value.endswith("h")

    @classmethod
    def parse(cls, text: str) -> "TimeRange":
        """Parse a ``time_range`` value; metric windows may also say ``1d`` for ``24h``."""
        text = WINDOW_ALIASES.get(text, text)
        return cls(text)

    @classmethod
    def names(cls) -> list[str]:
        return [member.value for member in cls]


# Metric windows are labelled like Prometheus durations; ``1d`` is the same window as ``24h``.
WINDOW_ALIASES = {"1d": "24h"}


def window_label(time_range: TimeRange) -> str:
    """The ``window`` label value for a range (``24h`` is published as ``1d``)."""
    return "1d" if time_range is TimeRange.H24 else time_range.value


@dataclass(frozen=True)
class ResolvedRange:
    """A time range pinned to concrete instants, in the site's timezone."""

    time_range: TimeRange
    start: datetime  # inclusive, tz-aware
    end: datetime  # exclusive upper bound ("now" for rolling windows, end of today for days)
    granularity: str  # "hour" | "day"

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    def buckets(self) -> list[datetime]:
        """The start of every bucket the window touches, oldest first."""
        step = timedelta(hours=1) if self.granularity == "hour" else timedelta(days=1)
        current = _floor(self.start, self.granularity)
        out = []
        while current < self.end:
            out.append(current)
            current += step
        return out


def resolve(time_range: TimeRange, now: datetime, tz: tzinfo = timezone.utc) -> ResolvedRange:
    """Pin ``time_range`` to instants around ``now`` (tz-aware) in timezone ``tz``."""
    local_now = now.astimezone(tz)
    if time_range.is_sub_day:
        return ResolvedRange(time_range, local_now - time_range.duration, local_now, "hour")
    days = time_range.duration.days
    today = _floor(local_now, "day")
    start = (today - timedelta(days=days - 1)).replace(tzinfo=tz)
    end = (today + timedelta(days=1)).replace(tzinfo=tz)
    return ResolvedRange(time_range, start, end, "day")


def _floor(moment: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def iso_z(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix, as every timestamp in the JSON API is written."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
