"""The forecasts' snapshot end to end on the file backend, as one refresh computes it.

The log: 10 M events of 1 M users over the last 365 days, 12 event names. The snapshot
(``exporter/areas/forecasts.py``): the daily users of the active users and 10 event names (the
features' events and funnels' first steps of a configuration like the default one) over a year
and today (``daily_users``), their analysis (``ForecastSet.analysed``: forecast, backtest, 90-day
scan, the last complete day's check) and every part the endpoints serve (each series' 30-day
forecast, the flags of every time range).

The baseline counts the same daily users the plain numpy way -- ``np.unique`` of (day, user)
keys, once for all events and once per event name -- then analyses them the same way; the
counts are checked equal. Both sides are CPU time of this process: ours the least of a few runs,
the baseline's one run (about 17 s).
"""

from __future__ import annotations

import math
import time
from datetime import date, timedelta

import numpy as np

from bench import BenchResult
from bench.kernels import _names
from exporter.analysis.forecast import DailySeries
from exporter.analysis.segments import DAY_SECONDS
from exporter.areas.forecasts import GATHERED_DAYS, ForecastSet
from exporter.events.log import EventLog
from exporter.events.log_activity import daily_users
from exporter.timeranges import TimeRange

SEED = 20261203
TODAY = 1_780_000_000 // DAY_SECONDS  # epoch day
NOW = TODAY * DAY_SECONDS + 15 * 3_600
EVENTS = 10_000_000
USERS = 1_000_000
NAMES = 12
COUNTED = 10  # event names with a series of their own
REPEATS = 3


def run() -> list[BenchResult]:
    log = _log()
    start = (TODAY - GATHERED_DAYS) * DAY_SECONDS
    counted = list(log.event_names[:COUNTED])
    ours_counts, ours = _timed(lambda: daily_users(log, counted, start, NOW + 1))
    plain_counts, baseline = _timed(lambda: _plain_daily_users(log, counted, start, NOW + 1), repeats=1)
    if ours_counts != plain_counts:
        raise AssertionError("daily_users and the plain count disagree")
    _, analysis = _timed(lambda: _snapshot(ours_counts))
    return [BenchResult(
        name=f"forecast snapshot: daily users of {COUNTED + 1} series over a year of {EVENTS // 1_000_000} M events",
        ours=ours + analysis, baseline=baseline + analysis, unit="s CPU",
        notes=(f"ours: daily_users {ours:.2f} s + analysis and every part {analysis:.2f} s; baseline: np.unique of "
               f"(day, user) keys per series {baseline:.2f} s + the same analysis; counts checked equal; "
               f"{USERS // 1_000_000} M users; process CPU time, ours the least of {REPEATS} runs",))]


def _log() -> EventLog:
    rng = np.random.default_rng(SEED)
    seconds = (TODAY - rng.integers(0, GATHERED_DAYS + 1, EVENTS)) * DAY_SECONDS + rng.integers(0, DAY_SECONDS, EVENTS)
    seconds = np.minimum(seconds, NOW)
    return EventLog.build(rng.integers(0, USERS, EVENTS).astype(np.int32), rng.integers(0, NAMES, EVENTS).astype(
        np.int32), seconds, _names("u", USERS), [f"app.event_{k}" for k in range(NAMES)])


def _plain_daily_users(log: EventLog, names: list[str], start: int, end: int):
    first, stop = np.searchsorted(log.timestamps, [start, end])
    day = (log.timestamps[first:stop] - start) // DAY_SECONDS
    users, events = log.user_ids[first:stop].astype(np.int64), log.event_ids[first:stop]
    days = -(-(end - start) // DAY_SECONDS)

    def per_day(mask: np.ndarray) -> tuple[int, ...]:
        pairs = np.unique(day[mask] * USERS + users[mask])
        return tuple(np.bincount(pairs // USERS, minlength=days).tolist())

    everything = np.ones(len(day), dtype=bool)
    return (per_day(everything), {name: per_day(events == log.event_code(name)) for name in names})


def _snapshot(counts) -> ForecastSet:
    first = date(1970, 1, 1) + timedelta(days=TODAY - GATHERED_DAYS)
    series = [DailySeries("active_users", first, counts.active)]
    series += [DailySeries(f"feature:{name}", first, values) for name, values in counts.by_event.items()]
    forecasts = ForecastSet.analysed(series, {}, NOW)
    for one in series:
        forecasts.forecast(one.name, 30)
    for time_range in TimeRange:
        forecasts.anomalies(date(1970, 1, 1) + timedelta(days=TODAY - time_range.duration.days))
    return forecasts


def _timed(function, repeats: int = REPEATS):
    """``(result, least CPU seconds of repeats calls)``."""
    best, result = math.inf, None
    for _ in range(repeats):
        started = time.process_time()
        result = function()
        best = min(best, time.process_time() - started)
    return result, best
