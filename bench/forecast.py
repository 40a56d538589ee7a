"""Forecasts and anomaly flags: cost, accuracy and the library question (docs/forecasting.md).

**Cost** (target: under 1 s of CPU): ``analyse`` plus the anomaly report over 100 series of 365
complete days each: the 30-day forecast with its band, the backtest (8 weekly origins, 14 days
ahead) and the one-day-ahead check of the last 90 days, every result object built. Baseline: the
seasonal naive forecast with a band from the MAD of its residuals, computing the same numbers
(forecast, backtest, 90 checks) with numpy, no result objects. CPU time of this process, best of
a few runs.

**Accuracy**, on synthetic series shaped like the platform's (``synthetic_series``: a level from
a fraction of a user to 20,000 a day, weekday/weekend rhythm, trend, level shifts, over-dispersed
Poisson noise, planted spikes and drops, lengths from 4 weeks to a year): the backtest's MASE and
95%-band coverage, and the anomaly flags' recall of planted anomalies and false flags on ordinary
days, ours against the seasonal naive + MAD baseline (the issue's robust starting point).

**Design**: the same accuracy set with our model run on plain counts and on log(1 + count)
instead of the square root, and without clipping the errors that move its states.

**Library**: statsmodels' ``ExponentialSmoothing`` (the same damped additive model, m = 7, on the
same square-root scale, parameters and initial states fitted by its optimiser) and ``STLForecast``
(robust STL, then a damped trend) on the first few year-long series, at the same origins: MASE,
coverage and CPU per fit. Then the import time and the resident memory each costs a process that
already has the service's numpy and scipy.special, measured in fresh processes.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from bench import BenchResult
from exporter.analysis.anomalies import ALERT_SCORE, anomaly_report
from exporter.analysis.forecast import (
    BACKTEST_HORIZON_DAYS,
    BAND_Z,
    CLIP_SIGMAS,
    GRID,
    MAX_HORIZON_DAYS,
    POISSON_SD,
    SCAN_DAYS,
    SEASON_DAYS,
    DailySeries,
    analyse,
    backtest_origins,
    count_band,
    project,
    scanned_days,
    smooth,
)

SEED = 20260917
FIRST_DAY = date(2025, 1, 6)
COST_SERIES, COST_DAYS, COST_REPEATS = 100, 365, 5
COST_TARGET_SECONDS = 1.0
ACCURACY_SERIES = 300
ACCURACY_LENGTHS = {365: 0.6, 180: 0.15, 90: 0.1, 42: 0.1, 28: 0.05}  # complete days: share of series
LIBRARY_SERIES = 10
SHIFT_SETTLING_DAYS = 10  # flags this soon after a level shift are neither right nor wrong
MAD_TO_SD = 1.482602218505602  # 1 / Phi^-1(3/4): a normal's standard deviation from its MAD


def run() -> list[BenchResult]:
    return [_cost(), *_accuracy(), *_design(), *_library()]


# --------------------------------------------------------------------------------------------
# Synthetic series
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Synthetic:
    values: np.ndarray
    planted: frozenset[int]  # days given a spike or a drop
    shift_day: int | None  # the day the level shifted, if it did


def synthetic_series(rng: np.random.Generator, days: int) -> Synthetic:
    """A daily count series with the platform's kind of structure (see the module docstring)."""
    kind = rng.choice(["large", "medium", "small", "sparse"], p=[0.3, 0.35, 0.25, 0.1])
    low, high = {"large": (500, 20_000), "medium": (40, 500), "small": (5, 40), "sparse": (0.2, 5)}[kind]
    level = math.exp(rng.uniform(math.log(low), math.log(high)))
    rhythm = rng.uniform(0.9, 1.1, SEASON_DAYS)
    rhythm[5:] *= rng.uniform(0.15, 1.0)  # weekends
    day = np.arange(days)
    log_mean = math.log(level) + rng.normal(0, 0.5) / 365 * day  # growth of up to about +-50% a year
    shift_day = None
    if rng.random() < 0.35:
        shift_day = int(rng.integers(days // 3, days))
        log_mean[shift_day:] += rng.normal(0, 0.35)
    mean = np.exp(log_mean) * (rhythm / rhythm.mean())[(day + rng.integers(SEASON_DAYS)) % SEASON_DAYS]
    dispersion = rng.uniform(15, 300)  # negative binomial: variance mean + mean^2 / dispersion
    values = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(float)
    planted = set()
    if rng.random() < 0.5:
        for _ in range(rng.integers(1, 4)):
            when = int(rng.integers(days // 2, days))
            factor = rng.uniform(2.0, 4.0) if rng.random() < 0.5 else rng.uniform(0.0, 0.35)
            values[when] = rng.poisson(mean[when] * factor)
            planted.add(when)
    return Synthetic(values, frozenset(planted), shift_day)


def _daily(values: np.ndarray, name: str) -> DailySeries:
    return DailySeries(name, FIRST_DAY, values, last_day_complete=True)


# --------------------------------------------------------------------------------------------
# The baseline: seasonal naive, band from the MAD of its residuals
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checked:
    """Forecasts for given days of each series: ``(series, days)`` arrays on the count scale."""

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def seasonal_naive(counts: np.ndarray, origin: int, steps: int, z: float) -> Checked:
    """From the days before ``origin``: the value 7 days earlier (the last week repeated), and a
    band of ``z`` robust standard deviations of the last 8 weeks' seasonal differences, widened
    by the square root of the number of weeks ahead."""
    ahead = np.arange(steps)
    expected = counts[:, origin - SEASON_DAYS + ahead % SEASON_DAYS]
    first = max(SEASON_DAYS, origin - 8 * SEASON_DAYS)
    residuals = counts[:, first:origin] - counts[:, first - SEASON_DAYS:origin - SEASON_DAYS]
    centred = residuals - np.median(residuals, axis=1, keepdims=True)
    sd = MAD_TO_SD * np.median(np.abs(centred), axis=1, keepdims=True) * np.sqrt(ahead // SEASON_DAYS + 1)
    return Checked(expected, np.maximum(expected - z * sd, 0), expected + z * sd)


def seasonal_naive_checks(counts: np.ndarray) -> tuple[dict[int, Checked], Checked]:
    """The baseline's backtest forecasts (by origin) and its one-day-ahead checks of the scan."""
    days = counts.shape[1]
    made = {origin: seasonal_naive(counts, origin, BACKTEST_HORIZON_DAYS, BAND_Z) for origin in backtest_origins(days)}
    checks = [seasonal_naive(counts, day, 1, ALERT_SCORE) for day in scanned_days(days)]
    return made, Checked(*(np.concatenate([getattr(c, field) for c in checks], axis=1)
                           for field in ("expected", "lower", "upper")))


def seasonal_naive_everything(counts: np.ndarray) -> tuple[Checked, tuple[np.ndarray, np.ndarray], Checked]:
    """The baseline's forecast, backtest and one-day-ahead checks: what ``analyse`` computes."""
    forecast = seasonal_naive(counts, counts.shape[1], MAX_HORIZON_DAYS, BAND_Z)
    made, checks = seasonal_naive_checks(counts)
    return forecast, backtest_scores(counts, made), checks


def backtest_scores(counts: np.ndarray, made: dict[int, Checked]) -> tuple[np.ndarray, np.ndarray]:
    """MASE and band coverage per series of forecasts ``made`` at each origin (as the analysis
    scores its own: scaled by the seasonal naive in-sample error before the origin)."""
    days = counts.shape[1]
    scaled, inside = [], []
    for origin, forecast in made.items():
        steps = min(forecast.expected.shape[1], days - origin)
        actual = counts[:, origin:origin + steps]
        scale = np.mean(np.abs(counts[:, SEASON_DAYS:origin] - counts[:, :origin - SEASON_DAYS]), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled.append(np.abs(actual - forecast.expected[:, :steps]) / scale[:, None])
        inside.append((actual >= forecast.lower[:, :steps]) & (actual <= forecast.upper[:, :steps]))
    scaled_errors = np.concatenate(scaled, axis=1)
    return np.nanmean(np.where(np.isfinite(scaled_errors), scaled_errors, np.nan), axis=1), \
        np.concatenate(inside, axis=1).mean(axis=1)


# --------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------

def _cpu_seconds(function, repeats: int) -> float:
    """Least CPU time of this process over ``repeats`` calls (noise only ever adds)."""
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def _cost() -> BenchResult:
    rng = np.random.default_rng(SEED)
    counts = np.array([synthetic_series(rng, COST_DAYS).values for _ in range(COST_SERIES)])
    series = [_daily(values, f"series_{k}") for k, values in enumerate(counts)]
    since = FIRST_DAY + timedelta(days=COST_DAYS - SCAN_DAYS)
    ours = _cpu_seconds(lambda: anomaly_report(analyse(series).values(), since), COST_REPEATS)
    baseline = _cpu_seconds(lambda: seasonal_naive_everything(counts), COST_REPEATS)
    return BenchResult(
        name=f"forecast: {COST_SERIES} series x {COST_DAYS} days, forecast + backtest + {SCAN_DAYS}-day scan",
        ours=ours, baseline=baseline, unit="s CPU", target=COST_TARGET_SECONDS,
        notes=((f"ours: analyse + anomaly_report (grid of {len(GRID)} candidates, result objects built); "
               f"baseline: seasonal naive + MAD, the same numbers with numpy, no result objects; least process "
               f"CPU time of {COST_REPEATS} runs"),))


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scores:
    """One method's figures over the accuracy set."""

    mase: float
    mase_by_length: dict[int, float]  # complete days: mean MASE of the series that long
    coverage: float
    recall: float  # share of planted anomalies in the scanned days that are flagged
    false_per_1000: float  # flags per 1000 ordinary scanned days


def _accuracy_set() -> list[Synthetic]:
    rng = np.random.default_rng(SEED + 1)
    lengths = rng.choice(list(ACCURACY_LENGTHS), ACCURACY_SERIES, p=list(ACCURACY_LENGTHS.values()))
    return [synthetic_series(rng, int(days)) for days in lengths]


def _ours(collection: list[Synthetic]) -> Scores:
    analyses = analyse([_daily(one.values, str(k)) for k, one in enumerate(collection)])
    report = anomaly_report(analyses.values(), FIRST_DAY)
    flags = {(int(anomaly.series), anomaly.timestamp) for anomaly in report.anomalies}
    backtests = [analysis.forecast.backtest for analysis in analyses.values()]
    mase = np.array([np.nan if b.mase is None else b.mase for b in backtests])
    coverage = [b.coverage for b in backtests if b.coverage is not None]
    return Scores(*_mase_figures(collection, mase), float(np.mean(coverage)),
                  *_flag_scores(collection, lambda k, day: (k, _timestamp(day)) in flags))


def _grouped(collection: list[Synthetic], checks_of: Callable[[np.ndarray], tuple[dict[int, Checked], Checked]]
             ) -> Scores:
    """Scores of a method given as ``checks_of(counts)``: its backtest forecasts by origin and its
    one-day-ahead checks, for series of one length at a time."""
    mase, coverage, flags = np.full(len(collection), np.nan), [], set()
    for days in sorted({len(one.values) for one in collection}):
        members = [k for k, one in enumerate(collection) if len(one.values) == days]
        counts = np.array([collection[k].values for k in members])
        made, checks = checks_of(counts)
        mase[members], group_coverage = backtest_scores(counts, made)
        coverage.extend(group_coverage)
        actual = counts[:, scanned_days(days).start:]
        outside = (actual < checks.lower) | (actual > checks.upper)
        flags.update((members[row], scanned_days(days)[column]) for row, column in zip(*np.nonzero(outside)))
    return Scores(*_mase_figures(collection, mase), float(np.mean(coverage)),
                  *_flag_scores(collection, lambda k, day: (k, day) in flags))


def _mase_figures(collection: list[Synthetic], mase: np.ndarray) -> tuple[float, dict[int, float]]:
    """Mean MASE over the series where it is defined, overall and by length."""
    lengths = np.array([len(one.values) for one in collection])
    return float(np.nanmean(mase)), {int(days): float(np.nanmean(mase[lengths == days]))
                                     for days in sorted(set(lengths))}


def _flag_scores(collection: list[Synthetic], is_flagged) -> tuple[float, float]:
    found = planted = false = ordinary = 0
    for k, one in enumerate(collection):
        for day in scanned_days(len(one.values)):
            if day in one.planted:
                planted += 1
                found += is_flagged(k, day)
            elif one.shift_day is None or not one.shift_day <= day < one.shift_day + SHIFT_SETTLING_DAYS:
                ordinary += 1
                false += is_flagged(k, day)
    return found / planted, 1000 * false / ordinary


def _timestamp(day: int) -> str:
    return f"{FIRST_DAY + timedelta(days=day)}T00:00:00Z"


def _accuracy() -> list[BenchResult]:
    collection = _accuracy_set()
    ours, baseline = _ours(collection), _grouped(collection, seasonal_naive_checks)
    described = (f"{ACCURACY_SERIES} synthetic series (complete days: "
                 f"{', '.join(f'{days} for {share:.0%}' for days, share in ACCURACY_LENGTHS.items())}); "
                 f"baseline: seasonal naive + MAD of its residuals")
    return [
        BenchResult(name="forecast accuracy: mean MASE of the backtest (1-14 days ahead)", ours=ours.mase,
                    baseline=baseline.mase, unit="",
                    notes=(described, "by complete days, ours / baseline: " + ", ".join(
                        f"{days}: {ours.mase_by_length[days]:.3f} / {baseline.mase_by_length[days]:.3f}"
                        for days in ours.mase_by_length))),
        BenchResult(name="forecast band: |coverage - 95%| of the backtest", ours=abs(ours.coverage - 0.95) * 100,
                    baseline=abs(baseline.coverage - 0.95) * 100, unit="points",
                    notes=(f"coverage: ours {ours.coverage:.3f}, baseline {baseline.coverage:.3f}",)),
        BenchResult(name="anomalies: planted spikes and drops flagged", ours=ours.recall * 100,
                    baseline=baseline.recall * 100, unit="%", better="higher",
                    notes=("many planted anomalies in sparse series (under 5 a day) are within ordinary noise",)),
        BenchResult(name="anomalies: false flags per 1000 ordinary days", ours=ours.false_per_1000,
                    baseline=baseline.false_per_1000, unit="",
                    notes=((f"days within {SHIFT_SETTLING_DAYS} days after a level shift are not counted either way; "
                           f"both flag beyond {ALERT_SCORE} standard deviations"),)),
    ]


# --------------------------------------------------------------------------------------------
# Design choices: the scale the model runs on, and the robust filter
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    """A scale for the model: counts into it, and a forecast's band out of it."""

    forward: Callable[[np.ndarray], np.ndarray]
    floor: float  # least standard deviation of the one-day-ahead error on the scale
    band: Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _plain_band(mean: np.ndarray, sd: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sd = np.maximum(sd, np.sqrt(np.maximum(mean, 1)))  # never below the Poisson noise of the forecast
    return np.maximum(mean, 0), np.maximum(mean - z * sd, 0), mean + z * sd


def _log_band(mean: np.ndarray, sd: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.expm1(np.maximum(mean, 0)), np.expm1(np.maximum(mean - z * sd, 0)), np.expm1(mean + z * sd)


SCALES = {"square root": Scale(np.sqrt, POISSON_SD, count_band),
          "plain counts": Scale(lambda counts: counts, 0.0, _plain_band),  # floored in the band instead
          "log(1 + count)": Scale(np.log1p, 0.0, _log_band)}


def _model_checks(scale: Scale, clip: float) -> Callable[[np.ndarray], tuple[dict[int, Checked], Checked]]:
    """Our model's backtest forecasts and checks on ``scale``, states moved by errors clipped at
    ``clip`` standard deviations (as ``analyse`` does for the square root and 3)."""
    def checks_of(counts: np.ndarray) -> tuple[dict[int, Checked], Checked]:
        days = counts.shape[1]
        origins, scanned = backtest_origins(days), list(scanned_days(days))
        stops = sorted(set(origins) | set(scanned))
        position = {day: k for k, day in enumerate(stops)}
        states = smooth(scale.forward(counts), stops, clip=clip, floor=scale.floor)
        mean, sd = project(states.take([position[origin] for origin in origins]), BACKTEST_HORIZON_DAYS)
        made = {origin: Checked(*scale.band(mean[k], sd[k], BAND_Z)) for k, origin in enumerate(origins)}
        mean, sd = project(states.take([position[day] for day in scanned]), 1)
        return made, Checked(*scale.band(mean[:, :, 0].T, sd[:, :, 0].T, ALERT_SCORE))
    return checks_of


def _design() -> list[BenchResult]:
    collection = _accuracy_set()
    scales = {name: _grouped(collection, _model_checks(scale, CLIP_SIGMAS)) for name, scale in SCALES.items()}
    unclipped = _grouped(collection, _model_checks(SCALES["square root"], math.inf))
    ours, plain, log = scales["square root"], scales["plain counts"], scales["log(1 + count)"]

    def figures(name: str, scores: Scores) -> str:
        return (f"{name}: MASE {scores.mase:.3f}, coverage {scores.coverage:.3f}, planted flagged "
                f"{scores.recall:.1%}, false flags {scores.false_per_1000:.2f} per 1000")
    scale_notes = tuple(figures(name, scores) for name, scores in scales.items())
    return [
        BenchResult(name="design: false flags per 1000 ordinary days, square root vs plain counts",
                    ours=ours.false_per_1000, baseline=plain.false_per_1000, unit="",
                    notes=((f"the accuracy set, our model on each scale (log(1 + count): "
                           f"{log.false_per_1000:.2f})"), *scale_notes)),
        BenchResult(name=f"design: false flags per 1000 ordinary days, errors clipped at {CLIP_SIGMAS:g} sigma vs not",
                    ours=ours.false_per_1000, baseline=unclipped.false_per_1000, unit="",
                    notes=(figures("clipped", ours), figures("not clipped", unclipped))),
    ]


# --------------------------------------------------------------------------------------------
# Library: statsmodels against our grid-fitted filter
# --------------------------------------------------------------------------------------------

def _statsmodels_forecasts(counts: np.ndarray, origins: list[int]) -> tuple[dict, dict, float, float]:
    """statsmodels' damped Holt-Winters and STL forecasts from each origin (square-root scale, as
    ours), and their CPU seconds per fit. The Holt-Winters band uses our variance formula with
    its fitted parameters and its residuals' root mean square; STL gets no band."""
    from statsmodels.tsa.forecasting.stl import STLForecast
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    holt_winters, stl = {}, {}
    holt_winters_cpu = stl_cpu = 0.0
    steps = np.arange(1, BACKTEST_HORIZON_DAYS + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter
        for origin in origins:
            rows, stl_rows = [], []
            for values in counts:
                x = np.sqrt(values[:origin])
                started = time.process_time()
                fit = ExponentialSmoothing(x, trend="add", damped_trend=True, seasonal="add",
                                           seasonal_periods=SEASON_DAYS).fit()
                mean = fit.forecast(BACKTEST_HORIZON_DAYS)
                holt_winters_cpu += time.process_time() - started
                p = fit.params
                damped = np.cumsum(p["damping_trend"] ** steps[:-1])
                carried = p["smoothing_level"] * (1 + p["smoothing_trend"] * damped) + \
                    p["smoothing_seasonal"] * (steps[:-1] % SEASON_DAYS == 0)
                sd = math.sqrt(fit.sse / len(x)) * np.sqrt(1 + np.concatenate(([0.0], np.cumsum(carried ** 2))))
                rows.append(_to_counts(mean, sd))
                started = time.process_time()
                stl_fit = STLForecast(x, ExponentialSmoothing, period=SEASON_DAYS, robust=True,
                                      model_kwargs={"trend": "add", "damped_trend": True}).fit()
                stl_rows.append(np.maximum(stl_fit.forecast(BACKTEST_HORIZON_DAYS), 0) ** 2)
                stl_cpu += time.process_time() - started
            holt_winters[origin] = Checked(*(np.array([row[k] for row in rows]) for k in range(3)))
            stl[origin] = Checked(np.array(stl_rows), np.zeros_like(stl_rows), np.full_like(stl_rows, np.inf))
    fits = len(origins) * len(counts)
    return holt_winters, stl, holt_winters_cpu / fits, stl_cpu / fits


def _to_counts(mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = np.maximum(mean, 0)
    return centre ** 2, np.maximum(centre - BAND_Z * sd, 0) ** 2, (centre + BAND_Z * sd) ** 2


def _library() -> list[BenchResult]:
    rng = np.random.default_rng(SEED + 2)
    counts = np.array([synthetic_series(rng, COST_DAYS).values for _ in range(LIBRARY_SERIES)])
    origins = backtest_origins(COST_DAYS)
    analyses = analyse([_daily(values, str(k)) for k, values in enumerate(counts)])
    ours_mase = float(np.mean([a.forecast.backtest.mase for a in analyses.values()]))
    ours_coverage = float(np.mean([a.forecast.backtest.coverage for a in analyses.values()]))
    naive_mase, _ = backtest_scores(counts, seasonal_naive_checks(counts)[0])
    holt_winters, stl, holt_winters_cpu, stl_cpu = _statsmodels_forecasts(counts, origins)
    hw_mase, hw_coverage = backtest_scores(counts, holt_winters)
    stl_mase, _ = backtest_scores(counts, stl)
    ours_cpu = _cpu_seconds(lambda: analyse([_daily(values, str(k)) for k, values in enumerate(counts)]), 3)
    per_series = ours_cpu / LIBRARY_SERIES
    subset = f"the first {LIBRARY_SERIES} year-long series x {len(origins)} origins"
    imports = {name: _import_cost(module, work) for name, (module, work) in _IMPORTED.items()}
    return [
        BenchResult(name="library: MASE, statsmodels ExponentialSmoothing (same model, optimiser-fitted)",
                    ours=ours_mase, baseline=float(np.mean(hw_mase)), unit="",
                    notes=((f"{subset}; coverage: ours {ours_coverage:.3f}, statsmodels {np.mean(hw_coverage):.3f}; "
                           f"seasonal naive MASE {np.mean(naive_mase):.3f}; STLForecast (robust STL + damped trend) "
                           f"MASE {np.mean(stl_mase):.3f}"),)),
        BenchResult(name="library: CPU per series, statsmodels ExponentialSmoothing fit", ours=per_series * 1e3,
                    baseline=holt_winters_cpu * 1e3, unit="ms",
                    notes=((f"ours: all of analyse (fit, 30-day forecast, backtest, {SCAN_DAYS}-day scan) per series "
                           f"of {LIBRARY_SERIES}; statsmodels: one fit and forecast (the backtest and the scan would "
                           f"need {len(origins)} and {SCAN_DAYS} more); STLForecast {stl_cpu * 1e3:.0f} ms a fit"),)),
        BenchResult(name="library: import time, statsmodels.tsa.holtwinters", ours=imports["ours"][0],
                    baseline=imports["holt_winters"][0], unit="s",
                    notes=((f"fresh processes that already imported numpy and scipy.special; best of 3; "
                           f"statsmodels.tsa.forecasting.stl {imports['stl'][0]:.2f} s"),)),
        BenchResult(name="library: resident memory added after import and one run", ours=imports["ours"][1],
                    baseline=imports["holt_winters"][1], unit="MB",
                    notes=((f"VmRSS after importing and running once, minus before importing (same processes); "
                           f"STL {imports['stl'][1]:.0f} MB; the service's budget is 120 MB"),)),
    ]


# module imported, then the work run once, in a process that already holds the service's libraries
_A_YEAR = "numpy.arange(365) % 7 + 1.0"  # a year of a weekly rhythm
_IMPORTED = {
    "ours": ("exporter.analysis.anomalies",
             ("from exporter.analysis.forecast import analyse, DailySeries; import datetime; "
              f"analyse([DailySeries(str(k), datetime.date(2025, 1, 6), {_A_YEAR} + k) for k in range(100)])")),
    "holt_winters": ("statsmodels.tsa.holtwinters",
                     ("from statsmodels.tsa.holtwinters import ExponentialSmoothing as E; "
                      f"E({_A_YEAR}, trend='add', damped_trend=True, seasonal='add', seasonal_periods=7).fit()")),
    "stl": ("statsmodels.tsa.forecasting.stl",
            ("from statsmodels.tsa.forecasting.stl import STLForecast as S; "
             "from statsmodels.tsa.holtwinters import ExponentialSmoothing as E; "
             f"S({_A_YEAR}, E, period=7, model_kwargs={{'trend': 'add', 'damped_trend': True}}).fit()")),
}


def _import_cost(module: str, work: str) -> tuple[float, float]:
    """(seconds to import ``module``, MB of resident memory added by the import and ``work``)."""
    code = ("import numpy, scipy.special, re, time, warnings; warnings.simplefilter('ignore')\n"
            "rss = lambda: int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            f"before = rss(); started = time.perf_counter(); import {module}\n"
            f"seconds = time.perf_counter() - started\n{work}\nprint(seconds, (rss() - before) / 1024)")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(3)]
    return min(float(seconds) for seconds, _ in runs), max(float(mb) for _, mb in runs)
