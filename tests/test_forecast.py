"""Forecasts and their backtest, checked against statsmodels and plain references written here.

The filter is statsmodels' Holt-Winters recursion (``ExponentialSmoothing``, same parameters and
initial states: same one-day-ahead forecasts); forecasts and band widths are those of
statsmodels' state-space ``ETSModel`` (its analytic prediction intervals). The forecasts are
compared with ``ETSModel`` rather than ``ExponentialSmoothing`` because the latter, up to
statsmodels 0.15, uses the seasonal state of one season before at horizons that are multiples of
the season (statsmodels issue #9538). The grid fit is compared with statsmodels' optimised fit,
and the published backtest with forecasts made by the public API from the data before each origin.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import date, timedelta

import jsonschema
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from exporter.analysis.anomalies import anomalies
from exporter.analysis.forecast import (
    BAND_Z,
    MAX_HORIZON_DAYS,
    DailySeries,
    Forecast,
    Grid,
    analyse,
    initial_states,
    project,
    smooth,
)
from exporter.results import json_schema, to_json

MONDAY = date(2025, 1, 6)
WEEKLY_SHAPE = np.array([1.1, 1.15, 1.1, 1.05, 1.0, 0.3, 0.3])  # Monday first: quiet weekends
ONE_CANDIDATE = Grid.of(alphas=(0.3,), trends=((0.1, 0.9),), gammas=(0.15,))


def weekly_means(days: int, level: float = 400.0, growth: float = 0.002, start: int = 0) -> np.ndarray:
    """Expected counts with a weekly rhythm and a linear trend, day ``start`` onwards from MONDAY."""
    day = np.arange(start, start + days)
    return level * (1 + growth * day) * WEEKLY_SHAPE[day % 7]


def poisson_counts(days: int, seed: int, **shape) -> np.ndarray:
    return np.random.default_rng(seed).poisson(weekly_means(days, **shape)).astype(float)


def analysed(values, *, complete: bool = True, name: str = "s"):
    return analyse([DailySeries(name, MONDAY, list(values), last_day_complete=complete)])[name]


def as_json(result) -> dict:
    body = to_json(result)
    json.dumps(body, allow_nan=False)
    return body


# -- the filter against statsmodels ----------------------------------------------------------

def statsmodels_filter(x: np.ndarray):
    """statsmodels' Holt-Winters with ONE_CANDIDATE's parameters and our initial states."""
    level0, season0 = initial_states(x[None])
    return ExponentialSmoothing(
        x, trend="add", damped_trend=True, seasonal="add", seasonal_periods=7, initialization_method="known",
        initial_level=level0[0], initial_trend=0.0, initial_seasonal=season0[0],
    ).fit(smoothing_level=0.3, smoothing_trend=0.1, smoothing_seasonal=0.15, damping_trend=0.9, optimized=False)


def test_the_filter_is_statsmodels_holt_winters_recursion():
    x = np.sqrt(poisson_counts(120, seed=1))
    states = smooth(x[None], range(len(x) + 1), grid=ONE_CANDIDATE, clip=math.inf)
    ours, _ = project(states, 1)
    fit = statsmodels_filter(x)
    assert ours[:-1, 0, 0] == pytest.approx(fit.fittedvalues, rel=1e-12)
    assert states.level[-1, 0] == pytest.approx(fit.level[-1], rel=1e-12)
    assert states.trend[-1, 0] == pytest.approx(fit.trend[-1], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("level", [400.0, 2.0])
def test_sigma_is_the_rms_one_day_error_widened_by_students_t(level):
    x = np.sqrt(poisson_counts(90, seed=3, level=level))
    days = [21, 30, 90]
    states = smooth(x[None], days, grid=ONE_CANDIDATE, clip=math.inf)
    fitted = statsmodels_filter(x).fittedvalues
    for k, day in enumerate(days):
        errors = x[14:day] - fitted[14:day]  # from the end of the warm-up
        rms = max(math.sqrt(np.mean(errors ** 2)), 0.5)  # never below the Poisson noise
        widening = stats.t.ppf(0.975, len(errors) - 4) / stats.norm.ppf(0.975)  # four parameters chosen
        assert states.sigma[k, 0] == pytest.approx(rms * widening, rel=1e-12)


def test_forecasts_and_band_widths_are_statsmodels_ets_intervals():
    x = np.sqrt(poisson_counts(150, seed=2))
    level0, season0 = initial_states(x[None])
    states = smooth(x[None], [len(x)], grid=ONE_CANDIDATE, clip=math.inf)
    mean, sd = project(states, MAX_HORIZON_DAYS)

    model = ETSModel(pd.Series(x), error="add", trend="add", damped_trend=True, seasonal="add", seasonal_periods=7,
                     initialization_method="known", initial_level=level0[0], initial_trend=0.0,
                     initial_seasonal=season0[0])
    result = model.smooth([0.3, 0.3 * 0.1, 0.15, 0.9])  # ETS's trend parameter is alpha * beta*
    frame = result.get_prediction(len(x), len(x) + MAX_HORIZON_DAYS - 1).summary_frame(alpha=0.05)
    assert mean[0, 0] == pytest.approx(frame["mean"].to_numpy(), rel=1e-12)
    ets_widths = (frame["pi_upper"] - frame["mean"]).to_numpy() / (BAND_Z * math.sqrt(result.mse))
    assert sd[0, 0] / states.sigma[0, 0] == pytest.approx(ets_widths, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_the_grid_fit_forecasts_like_statsmodels_optimised_fit(seed):
    counts = poisson_counts(182, seed=seed)
    ours = np.array([point.expected for point in analysed(counts).forecast.forecast])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter
        fit = ETSModel(pd.Series(np.sqrt(counts)), error="add", trend="add", damped_trend=True, seasonal="add",
                       seasonal_periods=7).fit(disp=False)
    theirs = np.maximum(fit.forecast(MAX_HORIZON_DAYS).to_numpy(), 0) ** 2
    assert ours == pytest.approx(theirs, rel=0.04)


# -- the published forecast ------------------------------------------------------------------

def test_a_clean_weekly_series_is_forecast_with_its_rhythm_and_trend():
    counts = poisson_counts(183, seed=5)
    result = analysed(counts, complete=False)  # the last value is today's, still filling
    body = as_json(result.forecast_for(MAX_HORIZON_DAYS))
    jsonschema.validate(body, json_schema(Forecast))

    today = MONDAY + timedelta(days=182)
    assert body["forecast"][0]["timestamp"] == f"{today.isoformat()}T00:00:00Z"
    assert body["history"][-1]["timestamp"] == f"{(today - timedelta(days=1)).isoformat()}T00:00:00Z"
    assert len(body["history"]) == 90 and len(body["forecast"]) == MAX_HORIZON_DAYS
    truth = weekly_means(MAX_HORIZON_DAYS, start=182)
    expected = np.array([point["expected"] for point in body["forecast"]])
    lower = np.array([point["lower"] for point in body["forecast"]])
    upper = np.array([point["upper"] for point in body["forecast"]])
    assert np.all((lower <= truth) & (truth <= upper))
    assert expected == pytest.approx(truth, rel=0.08)
    weekend = (np.arange(182, 182 + MAX_HORIZON_DAYS) % 7) >= 5
    assert expected[weekend].max() < 0.5 * expected[~weekend].min()
    assert body["method"] == "holt_winters_damped_sqrt" and body["status_codes"] == []
    assert body["backtest"]["baseline"] == "seasonal_naive"
    assert body["backtest"]["mase"] < 1 and 0.85 <= body["backtest"]["coverage"] <= 1
    assert anomalies(result) == ()


def test_the_band_widens_with_the_horizon_and_never_goes_below_zero():
    points = analysed(poisson_counts(120, seed=6, level=3.0, growth=0.0)).forecast.forecast
    widths = [point.upper - point.lower for point in points if point.lower > 0]
    assert all(point.lower >= 0 for point in points)
    same_weekday = [points[k].upper - points[k].lower for k in range(0, MAX_HORIZON_DAYS, 7)]
    assert same_weekday == sorted(same_weekday)
    assert widths  # a level of 3 a day still leaves room above 0 on busy days


@pytest.mark.parametrize("values, status", [([0.0] * 60, "no_seasonal_naive_error"),
                                            ([100.0] * 60, "no_seasonal_naive_error"),
                                            ([0.0] * 21, "backtest_needs_more_history"),
                                            ([100.0] * 21, "backtest_needs_more_history")])
def test_constant_and_zero_series_get_a_band_and_no_nan(values, status):
    body = as_json(analysed(values).forecast)
    assert len(body["forecast"]) == MAX_HORIZON_DAYS
    for point in body["forecast"]:
        assert point["expected"] == pytest.approx(values[0], abs=1e-9)
        assert 0 <= point["lower"] <= point["expected"] < point["upper"]
    assert body["status_codes"] == [status]
    assert body["backtest"]["mase"] is None
    assert body["backtest"]["coverage"] == (1.0 if len(values) >= 28 else None)


def test_a_series_shorter_than_three_weeks_is_insufficient_history():
    values = [10.0] * 20 + [5000.0]  # 20 complete days and today's
    result = analysed(values, complete=False)
    assert result.insufficient_history
    body = as_json(result.forecast_for(14))
    assert body["forecast"] == [] and body["status_codes"] == ["insufficient_history"]
    assert body["backtest"] == {"mase": None, "coverage": None, "baseline": "seasonal_naive"}
    assert len(body["history"]) == 20
    assert anomalies(analysed([10.0] * 19 + [5000.0])) == ()


def test_three_weeks_give_a_forecast_and_four_a_backtest():
    three_weeks = analysed(poisson_counts(21, seed=7)).forecast
    assert len(three_weeks.forecast) == MAX_HORIZON_DAYS
    assert three_weeks.status_codes == ("backtest_needs_more_history",)
    assert three_weeks.backtest.mase is None and three_weeks.backtest.coverage is None
    four_weeks = analysed(poisson_counts(28, seed=7)).forecast
    assert four_weeks.status_codes == () and four_weeks.backtest.mase is not None


@pytest.mark.parametrize("horizon", [0, 31, -1])
def test_a_horizon_outside_one_to_thirty_is_refused(horizon):
    with pytest.raises(ValueError, match="between 1 and 30"):
        analysed(poisson_counts(60, seed=8)).forecast_for(horizon)


@pytest.mark.parametrize("horizon", [1, 14, 30])
def test_the_horizon_cuts_the_forecast_computed_once(horizon):
    result = analysed(poisson_counts(60, seed=8))
    cut = result.forecast_for(horizon)
    assert cut.forecast == result.forecast.forecast[:horizon] and cut.backtest == result.forecast.backtest


@pytest.mark.parametrize("values", [[1.0, -1.0] * 15, [1.0] * 29 + [math.nan], [math.inf] * 30])
def test_values_that_are_not_counts_are_refused(values):
    with pytest.raises(ValueError, match="finite and non-negative"):
        analysed(values)


def test_series_names_are_unique():
    with pytest.raises(ValueError, match="unique"):
        analyse([DailySeries("a", MONDAY, [1.0] * 30), DailySeries("a", MONDAY, [2.0] * 30)])


def test_series_are_analysed_alike_alone_or_together():
    together = analyse([DailySeries(f"s{k}", MONDAY, poisson_counts(100 + 20 * (k % 2), seed=k)) for k in range(4)])
    for k in range(4):
        alone = analysed(poisson_counts(100 + 20 * (k % 2), seed=k), complete=False, name=f"s{k}")
        assert together[f"s{k}"].forecast == alone.forecast


# -- the backtest ----------------------------------------------------------------------------

def reference_backtest(values: np.ndarray) -> tuple[float, float]:
    """MASE and coverage of the forecasts the API publishes from the days before each weekly
    origin (up to 8, each with 21 days or more before it), 1 to 14 days ahead."""
    days = len(values)
    scaled, inside = [], []
    for origin in range(days - 7, 20, -7)[:8]:
        published = analysed(values[:origin]).forecast.forecast
        scale = np.mean(np.abs(values[7:origin] - values[:origin - 7]))
        for step in range(min(14, days - origin)):
            actual, point = values[origin + step], published[step]
            scaled.append(abs(actual - point.expected) / scale)
            inside.append(point.lower <= actual <= point.upper)
    return float(np.mean(scaled)), float(np.mean(inside))


@pytest.mark.parametrize("days, seed", [(365, 9), (40, 10), (70, 11)])
def test_the_backtest_scores_the_forecasts_published_at_its_origins(days, seed):
    values = poisson_counts(days, seed=seed, level=60.0)
    values[days // 2] *= 4  # an outlier in the backtest's way
    backtest = analysed(values).forecast.backtest
    mase, coverage = reference_backtest(values)
    assert backtest.mase == pytest.approx(mase, rel=1e-9)
    assert backtest.coverage == pytest.approx(coverage, rel=1e-12)
