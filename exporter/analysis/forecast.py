"""Daily forecasts with a 95% band, and the backtest published with them (docs/forecasting.md).

The method (chosen by the backtest in docs/forecasting.md, "Choosing the method"):

* **Scale.** The model runs on the square root of the counts. Daily users and page views are
  counts whose noise grows with their level and whose weekday/weekend rhythm is proportional to
  it; on the square-root scale Poisson noise has a standard deviation of about 1/2 whatever the
  level, so one band width fits a quiet Sunday and a busy Tuesday. Forecasts are squared back, so
  the band is asymmetric and its lower bound is never below 0.
* **Model.** Damped additive Holt-Winters with a weekly season (ETS(A,Ad,A), m = 7), in error
  correction form: with the one-day-ahead error ``e = x_t - (l + phi b + s_t)``,
  ``l <- l + phi b + alpha e``, ``b <- phi b + alpha beta e``, ``s_t <- s_t + gamma e``.
  Errors beyond ``CLIP_SIGMAS`` standard deviations move the states as if they were that large
  (a robust filter in the spirit of Gelper, Fried and Croux, 2010), so one spike does not drag the
  level and the next days are not flagged for it.
* **Fit.** The smoothing parameters are chosen from a small grid (``GRID``) by the squared
  one-day-ahead error, every candidate filtered at once (numpy over series x candidates, one
  Python step per day). A forecast made before day ``t`` uses only days before ``t``: the
  parameters, the states and the noise level are those of the data so far, which is what makes
  the anomaly scan and the backtest honest.
* **Band.** ``sigma`` is the root mean square one-day-ahead error since the warm-up (at least
  ``POISSON_SD``, the square-root scale's Poisson noise, so a constant or all-zero series still
  gets a band), widened by Student's t while it rests on few errors. The ``h``-day standard
  deviation is ``sigma * sqrt(1 + sum_{j<h} c_j^2)`` with ``c_j = alpha (1 + beta phi_j) +
  gamma [j mod 7 = 0]`` and ``phi_j = phi + ... + phi^j`` (Hyndman et al., *Forecasting with
  Exponential Smoothing*, 2008, table 6.1, class 1).
* **Backtest.** From up to ``BACKTEST_ORIGINS`` weekly origins before the last complete day, the
  forecast made there (up to ``BACKTEST_HORIZON_DAYS`` ahead) is compared with what happened:
  MASE (mean absolute error scaled by the in-sample error of the seasonal naive forecast,
  ``mean |y_t - y_{t-7}|`` before the origin; below 1 beats it) and the share of days inside the
  95% band.

The initial states come from the first ``MIN_HISTORY_DAYS`` days only, so nothing a day is
checked against depends on a later day.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import numpy as np
from scipy import special

from ..results import COUNT, FRACTION, SCORE, declare
from ..timeranges import iso_z

SEASON_DAYS = 7
MIN_HISTORY_DAYS = 21  # three weeks: the initial states, and the least history a forecast is made from
WARMUP_DAYS = 14  # errors before this day reflect the initial states more than the parameters
MAX_HORIZON_DAYS = 30
HISTORY_DAYS = 90  # complete days published with a forecast
SCAN_DAYS = 90  # complete days checked for anomalies (the longest time range)
BACKTEST_ORIGINS = 8
BACKTEST_HORIZON_DAYS = 14
BAND_Z = float(special.ndtri(0.975))  # two-sided 95% normal quantile
POISSON_SD = 0.5  # standard deviation of the square root of a Poisson count
CLIP_SIGMAS = 3.0
FITTED_PARAMETERS = 4  # alpha, beta, phi, gamma: chosen from the errors sigma is estimated from
METHOD = "holt_winters_damped_sqrt"
BASELINE = "seasonal_naive"


# -- input -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DailySeries:
    """One tracked series: a non-negative count per UTC day from ``first_day``, oldest first.

    ``last_day_complete`` is False when the last value is today's, still filling: it is neither
    fitted nor checked, and the forecast starts on that day.
    """

    name: str
    first_day: date
    values: Sequence[float]
    last_day_complete: bool = False

    @property
    def complete_days(self) -> int:
        return max(len(self.values) - (not self.last_day_complete), 0)


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryPoint:
    """The series' value on one complete day."""

    timestamp: str = declare("start of the UTC day", key=True)
    value: float = declare("the series' value that day", COUNT)


@dataclass(frozen=True)
class ForecastPoint:
    """The forecast for one day and its 95% band."""

    timestamp: str = declare("start of the UTC day", key=True)
    expected: float = declare("forecast value (the median of the forecast distribution)", COUNT)
    lower: float = declare("lower bound of the 95% band, never below 0", COUNT)
    upper: float = declare("upper bound of the 95% band", COUNT)


@dataclass(frozen=True)
class Backtest:
    """How the method's past forecasts of this series fared against what happened."""

    mase: float | None = declare(
        "mean absolute scaled error of forecasts from up to 8 weekly origins, 1 to 14 days ahead: the mean "
        "absolute error divided by the seasonal naive forecast's in-sample error (below 1 beats it); null when "
        "there is no origin or the series repeats itself exactly every week", SCORE)
    coverage: float | None = declare("share of backtested days inside the 95% band (ideally about 0.95); null "
                                     "when there is no origin", FRACTION)
    baseline: Literal["seasonal_naive"] = declare("what the MASE is scaled by: the value 7 days before")


@dataclass(frozen=True)
class Forecast:
    """The forecast of one daily series, with the last 90 days it was made from and its backtest.

    Status codes: ``insufficient_history`` (fewer than 21 complete days: no forecast, no backtest),
    ``backtest_needs_more_history`` (fewer than 28 complete days: no backtest origin),
    ``no_seasonal_naive_error`` (the series repeats itself exactly every week, so the MASE is
    undefined).
    """

    series: str = declare("the series' name", key=True)
    method: str = declare("how the forecast is made (docs/forecasting.md)")
    history: tuple[HistoryPoint, ...] = declare("the last 90 complete days, oldest first")
    forecast: tuple[ForecastPoint, ...] = declare("the next days, starting with the first day not yet complete")
    backtest: Backtest = declare("the method's backtest on this series")  # noqa: RUF009 - a dataclasses.field
    status_codes: tuple[str, ...] = declare("why a part is missing or null")


# -- the smoothing grid ------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """Candidate parameters, one per index: level, trend (Holt's beta*), damping, season."""

    alpha: np.ndarray
    beta: np.ndarray
    phi: np.ndarray
    gamma: np.ndarray

    @classmethod
    def of(cls, alphas: Sequence[float], trends: Sequence[tuple[float, float]], gammas: Sequence[float]) -> Grid:
        """Every combination with ``gamma <= 1 - alpha`` (the usual admissible region)."""
        rows = [(a, b, p, g) for a in alphas for b, p in trends for g in gammas if g <= 1 - a]
        return cls(*(np.array(column, dtype=float) for column in zip(*rows)))

    def __len__(self) -> int:
        return len(self.alpha)


# A trend of 0 stays 0 (the initial trend is 0), so its damping is immaterial. The backtest in
# docs/forecasting.md found finer grids (up to 560 points) no more accurate than this one.
GRID = Grid.of(alphas=(0.05, 0.15, 0.3, 0.5, 0.8), trends=((0.0, 0.98), (0.1, 0.9), (0.1, 0.98)),
               gammas=(0.0, 0.1, 0.3))


@dataclass(frozen=True)
class States:
    """The chosen model of each series just before day ``day[k]``, for ``K`` such days.

    Arrays are ``(K, S)`` for ``S`` series; ``season`` is ``(K, S, 7)``, indexed by the day's
    position in the series modulo 7. ``sigma`` is the one-day-ahead error's standard deviation on
    the square-root scale.
    """

    day: np.ndarray
    level: np.ndarray
    trend: np.ndarray
    season: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    phi: np.ndarray
    gamma: np.ndarray
    sigma: np.ndarray

    def take(self, positions: Sequence[int] | np.ndarray) -> States:
        """The states at the given positions of ``day``."""
        return States(*(getattr(self, field.name)[positions] for field in dataclasses.fields(self)))


def initial_states(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level (the first week's mean) and season (each weekday's mean deviation from its week's
    mean) of each row of ``x`` (series x days), from its first ``MIN_HISTORY_DAYS`` days at most."""
    weeks = max(1, min(x.shape[1], MIN_HISTORY_DAYS) // SEASON_DAYS)
    first = x[:, :weeks * SEASON_DAYS].reshape(len(x), weeks, SEASON_DAYS)
    week_means = first.mean(axis=2, keepdims=True)
    return week_means[:, 0, 0], (first - week_means).mean(axis=1)


def smooth(x: np.ndarray, at: Sequence[int], grid: Grid = GRID, clip: float = CLIP_SIGMAS,
           floor: float = POISSON_SD) -> States:
    """Filter every row of ``x`` (series x days, on the model's scale) with every candidate of
    ``grid`` and return, for each day in ``at`` (ascending, 0..days), the state just before it of
    the candidate with the least squared one-day-ahead error before it (from ``WARMUP_DAYS`` on).

    ``clip`` (in standard deviations) bounds the error that moves the states from
    ``MIN_HISTORY_DAYS`` on; ``math.inf`` gives the plain filter. ``floor`` is the least
    standard deviation of the one-day-ahead error. The initial states are :func:`initial_states`.
    """
    days = x.shape[1]
    stops = np.asarray(at, dtype=int)
    if not len(stops) or np.any(np.diff(stops) <= 0) or stops[0] < 0 or stops[-1] > days:
        raise ValueError("days to report must be given ascending, within 0..len(series)")
    level0, season0 = initial_states(x)
    level = np.repeat(level0[:, None], len(grid), axis=1)
    trend = np.zeros_like(level)
    season = np.repeat(season0.T[:, :, None], len(grid), axis=2)  # (7, S, G)
    squared_errors = np.zeros_like(level)
    trend_gain = grid.alpha * grid.beta
    wanted, snapshots = set(stops.tolist()), []
    for day in range(days + 1):
        if day in wanted:
            snapshots.append(_least_error(squared_errors, level, trend, season, grid,
                                          errors=max(day - WARMUP_DAYS, 0), floor=floor))
        if day == days:
            break
        slot = day % SEASON_DAYS
        carried = grid.phi * trend
        error = x[:, day, None] - level - carried - season[slot]
        if day >= MIN_HISTORY_DAYS and math.isfinite(clip):
            bound = clip * np.maximum(np.sqrt(squared_errors / (day - WARMUP_DAYS)), floor)
            squared_errors += error * error
            np.clip(error, -bound, bound, out=error)
        elif day >= WARMUP_DAYS:
            squared_errors += error * error
        level += carried + grid.alpha * error
        trend = carried + trend_gain * error
        season[slot] += grid.gamma * error
    return States(stops, *(np.stack(parts) for parts in zip(*snapshots)))


def _least_error(squared_errors: np.ndarray, level: np.ndarray, trend: np.ndarray, season: np.ndarray, grid: Grid,
                 errors: int, floor: float) -> tuple[np.ndarray, ...]:
    """State, parameters and sigma of each series' candidate with the least squared error so far,
    in the order of :class:`States`' fields after ``day``."""
    best = squared_errors.argmin(axis=1)  # before any error counts, the first candidate
    rows = np.arange(len(best))
    rms = np.sqrt(squared_errors[rows, best] / max(errors, 1))
    sigma = np.maximum(rms, floor) * small_sample_factor(errors)
    return (level[rows, best], trend[rows, best], season[:, rows, best].T, grid.alpha[best], grid.beta[best],
            grid.phi[best], grid.gamma[best], sigma)


def small_sample_factor(errors: int) -> float:
    """How much wider a band must be when ``sigma`` is estimated from only ``errors`` one-day-ahead
    errors: Student's t quantile over the normal one (95%, two-sided), with a degree of freedom
    less for each smoothing parameter chosen from those errors. About 1 after a few months."""
    degrees_of_freedom = max(errors - FITTED_PARAMETERS, 1)
    return float(special.stdtrit(degrees_of_freedom, 0.975)) / BAND_Z


def project(states: States, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (square-root scale, each ``(K, S, steps)``) of the forecasts
    made from ``states`` for the ``steps`` days starting with ``states.day``."""
    ahead = np.arange(1, steps + 1)
    phi = states.phi[..., None]
    damped_sum = np.cumsum(phi ** ahead, axis=-1)  # phi_h = phi + ... + phi^h
    slots = (states.day[:, None, None] + ahead - 1) % SEASON_DAYS
    season = np.take_along_axis(states.season, np.broadcast_to(slots, (*states.level.shape, steps)), axis=-1)
    mean = states.level[..., None] + damped_sum * states.trend[..., None] + season
    # c_j for j = 1 .. steps - 1: how much of day j's error is still in the forecast j days later
    carried = (states.alpha[..., None] * (1 + states.beta[..., None] * damped_sum[..., :-1])
               + states.gamma[..., None] * (ahead[:-1] % SEASON_DAYS == 0))
    variance_factor = 1 + np.concatenate((np.zeros((*mean.shape[:-1], 1)), np.cumsum(carried ** 2, axis=-1)), -1)
    return mean, states.sigma[..., None] * np.sqrt(variance_factor)


def count_band(mean: np.ndarray, sd: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(expected, lower, upper)`` on the count scale for a square-root-scale forecast and a band
    of ``z`` standard deviations. A forecast below 0 is taken as 0 first: counts are not negative."""
    centre = np.maximum(mean, 0.0)
    return centre ** 2, np.maximum(centre - z * sd, 0.0) ** 2, (centre + z * sd) ** 2


# -- the analysis ----------------------------------------------------------------------------

@dataclass(frozen=True)
class OneDayAhead:
    """The forecast made for each scanned complete day from the days before it (square-root
    scale): what :mod:`exporter.analysis.anomalies` checks each day against."""

    days: tuple[date, ...]
    values: np.ndarray
    mean: np.ndarray
    sd: np.ndarray


@dataclass(frozen=True)
class SeriesAnalysis:
    """Everything one snapshot publishes about a series, computed once."""

    name: str
    forecast: Forecast  # MAX_HORIZON_DAYS ahead
    one_day_ahead: OneDayAhead

    @property
    def insufficient_history(self) -> bool:
        return "insufficient_history" in self.forecast.status_codes

    def forecast_for(self, horizon: int) -> Forecast:
        """The forecast for the next ``horizon`` days (1..30)."""
        if not 1 <= horizon <= MAX_HORIZON_DAYS:
            raise ValueError(f"horizon must be between 1 and {MAX_HORIZON_DAYS} days, not {horizon}")
        return dataclasses.replace(self.forecast, forecast=self.forecast.forecast[:horizon])


def analyse(series: Sequence[DailySeries]) -> dict[str, SeriesAnalysis]:
    """Forecast, backtest and one-day-ahead checks of every series, by name in input order.

    Series with the same number of complete days are filtered together (one pass over the days
    for all of them and every candidate of the grid).
    """
    names = [one.name for one in series]
    if len(set(names)) != len(names):
        raise ValueError("series names must be unique")
    for one in series:
        values = np.asarray(one.values, dtype=float)
        if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"series {one.name!r}: daily values must be finite and non-negative")
    by_length: dict[int, list[DailySeries]] = {}
    for one in series:
        by_length.setdefault(one.complete_days, []).append(one)
    done: dict[str, SeriesAnalysis] = {}
    for days, group in by_length.items():
        analyse_group = _analyse_group if days >= MIN_HISTORY_DAYS else _too_short
        done.update((result.name, result) for result in analyse_group(group, days))
    return {name: done[name] for name in names}


def backtest_origins(days: int) -> list[int]:
    """The days (ascending) from which a series of ``days`` complete days is backtested: every
    7th day back from a week before the end, at most ``BACKTEST_ORIGINS``, each with at least
    ``MIN_HISTORY_DAYS`` days before it."""
    return list(range(days - SEASON_DAYS, MIN_HISTORY_DAYS - 1, -SEASON_DAYS))[:BACKTEST_ORIGINS][::-1]


def scanned_days(days: int) -> range:
    """The complete days of a series of ``days`` checked for anomalies: the last ``SCAN_DAYS``
    that have ``MIN_HISTORY_DAYS`` days before them."""
    return range(max(MIN_HISTORY_DAYS, days - SCAN_DAYS), days)


def _too_short(group: Sequence[DailySeries], days: int) -> list[SeriesAnalysis]:
    return [SeriesAnalysis(one.name, Forecast(one.name, METHOD, _history(one, days), (), Backtest(None, None, BASELINE),
                                              ("insufficient_history",)),
                           OneDayAhead((), np.zeros(0), np.zeros(0), np.zeros(0)))
            for one in group]


def _analyse_group(group: Sequence[DailySeries], days: int) -> list[SeriesAnalysis]:
    counts = np.array([np.asarray(one.values[:days], dtype=float) for one in group])
    scanned, origins = np.array(scanned_days(days), dtype=int), np.array(backtest_origins(days), dtype=int)
    stops = np.union1d(np.union1d(scanned, origins), [days])
    states = smooth(np.sqrt(counts), stops)
    position = {int(day): k for k, day in enumerate(stops)}

    mean, sd = project(states.take([position[days]]), MAX_HORIZON_DAYS)
    expected, lower, upper = count_band(mean[0], sd[0], BAND_Z)
    mase, coverage = _backtest(counts, states.take([position[int(o)] for o in origins]))
    checked_mean, checked_sd = project(states.take([position[int(day)] for day in scanned]), 1)

    results = []
    for row, one in enumerate(group):
        status_codes = []
        if not len(origins):
            status_codes.append("backtest_needs_more_history")
        elif mase[row] is None:
            status_codes.append("no_seasonal_naive_error")
        future = [ForecastPoint(day_timestamp(one.first_day + timedelta(days=days + step)), float(expected[row, step]),
                                float(lower[row, step]), float(upper[row, step])) for step in range(MAX_HORIZON_DAYS)]
        forecast = Forecast(one.name, METHOD, _history(one, days), tuple(future),
                            Backtest(mase[row], coverage[row], BASELINE), tuple(status_codes))
        checks = OneDayAhead(tuple(one.first_day + timedelta(days=int(day)) for day in scanned),
                             counts[row, scanned], checked_mean[:, row, 0], checked_sd[:, row, 0])
        results.append(SeriesAnalysis(one.name, forecast, checks))
    return results


def _backtest(counts: np.ndarray, states: States) -> tuple[list[float | None], list[float | None]]:
    """MASE and band coverage per series of the forecasts made from ``states`` (weekly origins)."""
    series, days = counts.shape
    if not len(states.day):
        return [None] * series, [None] * series
    mean, sd = project(states, BACKTEST_HORIZON_DAYS)
    expected, lower, upper = count_band(mean, sd, BAND_Z)
    target_days = states.day[:, None] + np.arange(BACKTEST_HORIZON_DAYS)  # (K, H)
    observed = np.broadcast_to((target_days < days)[:, None, :], (len(states.day), series, BACKTEST_HORIZON_DAYS))
    actual = counts[:, np.minimum(target_days, days - 1)].transpose(1, 0, 2)  # (K, S, H)
    seasonal_errors = np.abs(counts[:, SEASON_DAYS:] - counts[:, :-SEASON_DAYS])  # day t's, from t = 7
    cumulative = np.concatenate((np.zeros((series, 1)), np.cumsum(seasonal_errors, axis=1)), axis=1)
    scale = (cumulative[:, states.day - SEASON_DAYS] / (states.day - SEASON_DAYS)).T  # (K, S): before each origin
    scaled = np.abs(actual - expected) / np.where(scale > 0, scale, np.nan)[..., None]
    usable = observed & (scale > 0)[..., None]
    inside = (actual >= lower) & (actual <= upper)
    mase = [float(np.mean(scaled[:, row][usable[:, row]])) if usable[:, row].any() else None for row in range(series)]
    coverage = [float(np.mean(inside[:, row][observed[:, row]])) for row in range(series)]
    return mase, coverage


def _history(one: DailySeries, days: int) -> tuple[HistoryPoint, ...]:
    return tuple(HistoryPoint(day_timestamp(one.first_day + timedelta(days=day)), float(one.values[day]))
                 for day in range(max(0, days - HISTORY_DAYS), days))


def day_timestamp(day: date) -> str:
    """The start of a UTC day as the API writes timestamps."""
    return iso_z(datetime.combine(day, time(), tzinfo=UTC))
