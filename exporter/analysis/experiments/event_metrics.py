"""Experiments measured on identified events: metric definitions, statistics and the guardrail.

The methods are those of ``docs/experiment-metrics.md`` (``#statistics``, ``#the-guardrail``); this
module is their pure part. The backends (``exporter.events.log_exposures`` for the file,
``exporter.events.clickhouse_exposures`` for ClickHouse) reduce the events to :class:`ExposureSums`:
per experiment and variant, the sums of two per-user measures ``y`` and ``x``, their squares and
their product (:meth:`ExperimentMetricsSettings.measures` says what they count). Everything here is
computed from those sums, exactly as from the per-user values:

* a mean metric (``conversion``, ``count``): ``y`` is the user's measure in the window after the
  first exposure, ``x`` the same measure over the CUPED pre-period before it (0 without CUPED);
* a ``ratio`` metric: ``y`` is the user's numerator and ``x`` the denominator, both in the window.

Statistics: the unpooled (Welch-type) z-test for means; the delta method for ratios and for
relative lifts; CUPED with one ``theta`` pooled over every exposed user of the experiment; Holm
across the treatments per metric on the decision test (the CUPED test when CUPED applies); lift
intervals at the experiment's alpha, Bonferroni-adjusted across the treatments as the conversion
read-out's are (``docs/methods.md#several-treatments``). Variances are sample variances (n - 1),
computed from the exact integer sums (Python integers), so a constant measure has a variance of
exactly 0.

Undefined numbers are None and a status code says why; nothing here divides by zero or returns
NaN. :func:`guardrail_recommendation` turns a ``ship`` into ``investigate_guardrail`` when the
winner is significantly worse on a guardrail metric.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ...results import CHANGE, COUNT, FRACTION, NUMBER, PROBABILITY, USERS, declare
from .frequentist import holm_adjust, normal_critical_value, two_sided_p_value, wald_interval
from .recommend import Recommendation, _p

DAY_SECONDS = 86_400
EXPOSURE_EVENT = "experiment.exposure"
EXPERIMENT_PROPERTY = "experiment"  # the exposure event's property naming the experiment (its id or name)
VARIANT_PROPERTY = "variant"  # ... and the variant the user saw
DEFAULT_WINDOW_DAYS = 14
DEFAULT_PRE_PERIOD_DAYS = 14
MAX_DAYS = 366  # a window or pre-period longer than a year measures something else than the experiment
CONTROL_NAME = "control"  # the control of an experiment known only from its exposure events, when present

MetricKind = Literal["conversion", "count", "ratio"]
METRIC_KINDS: tuple[str, ...] = typing.get_args(MetricKind)
GUARDRAIL_CODE = "investigate_guardrail"


# --- configuration ------------------------------------------------------------------------------

def _check_days(label: str, key: str, days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"{label}: {key} must be a whole number of days from 1 to {MAX_DAYS} (got {days!r})")


def _check_event(label: str, key: str, name: str | None) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{label}: {key} must be an event name (got {name!r})")


@dataclass(frozen=True)
class MetricDefinition:
    """One metric: ``experiment_metrics.metrics[]`` in the configuration.

    ``conversion`` (did the user do ``event`` in the window) and ``count`` (how many times) take
    ``event``; ``ratio`` takes ``numerator`` and ``denominator`` (event names, counted per user in
    the window; the metric is the sum of numerators over the sum of denominators). The window is
    ``[first exposure, first exposure + window_days x 86400 s)``. A ``guardrail`` metric can stop a
    ``ship``; ``higher_is_better: false`` says that an increase is the harm (errors, latency events).
    """

    name: str
    kind: MetricKind
    event: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    window_days: int = DEFAULT_WINDOW_DAYS
    guardrail: bool = False
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("a metric needs a non-empty name")
        label = f"metric {self.name!r}"
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"{label}: kind {self.kind!r} is not one of {', '.join(METRIC_KINDS)}")
        if self.kind == "ratio":
            _check_event(label, "numerator (kind ratio)", self.numerator)
            _check_event(label, "denominator (kind ratio)", self.denominator)
            if self.event is not None:
                raise ValueError(f"{label}: event is for kinds conversion and count; a ratio takes numerator "
                                 "and denominator")
        else:
            _check_event(label, f"event (kind {self.kind})", self.event)
            if self.numerator is not None or self.denominator is not None:
                raise ValueError(f"{label}: numerator and denominator are for kind ratio, not {self.kind}")
        _check_days(label, "window_days", self.window_days)

    @property
    def events(self) -> tuple[str, ...]:
        """The event names the metric reads."""
        if self.kind == "ratio":
            return (self.numerator, self.denominator)  # type: ignore[return-value]
        return (self.event,)  # type: ignore[return-value]

    @property
    def window_seconds(self) -> int:
        return self.window_days * DAY_SECONDS


@dataclass(frozen=True)
class CupedSettings:
    """``experiment_metrics.cuped``: the covariate is the metric over this many days before the
    user's first exposure."""

    pre_period_days: int = DEFAULT_PRE_PERIOD_DAYS

    def __post_init__(self) -> None:
        _check_days("cuped", "pre_period_days", self.pre_period_days)

    @property
    def pre_period_seconds(self) -> int:
        return self.pre_period_days * DAY_SECONDS


@dataclass(frozen=True)
class ExperimentMetricsSettings:
    """``experiment_metrics`` in the configuration; ``cuped: null`` turns CUPED off."""

    exposure_event: str = EXPOSURE_EVENT
    metrics: tuple[MetricDefinition, ...] = ()
    cuped: CupedSettings | None = field(default_factory=CupedSettings)

    def __post_init__(self) -> None:
        _check_event("experiment_metrics", "exposure_event", self.exposure_event)
        names = [metric.name for metric in self.metrics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:  # metric names are label values and JSON keys: they must tell the metrics apart
            raise ValueError(f"experiment_metrics.metrics: the name {duplicates[0]!r} is used more than once")

    @property
    def metric_events(self) -> tuple[str, ...]:
        """Every event name some metric reads, once each, in order of appearance."""
        return tuple(dict.fromkeys(name for metric in self.metrics for name in metric.events))

    def uses_cuped(self, metric: MetricDefinition) -> bool:
        """CUPED applies to mean metrics when it is configured; a ratio has no covariate."""
        return self.cuped is not None and metric.kind != "ratio"

    def measures(self, metric: MetricDefinition) -> Measures:
        """What the backends count per user for ``metric`` (see :class:`Measures`)."""
        window = metric.window_seconds
        if metric.kind == "ratio":
            return Measures(Window(metric.numerator, 0, window), Window(metric.denominator, 0, window), False)
        before = Window(metric.event, -self.cuped.pre_period_seconds, 0) if self.cuped is not None else None
        return Measures(Window(metric.event, 0, window), before, metric.kind == "conversion")


@dataclass(frozen=True)
class Window:
    """The user's events named ``event`` at ``[t0 + start, t0 + stop)``, ``t0`` the first exposure."""

    event: str
    start: int
    stop: int


@dataclass(frozen=True)
class Measures:
    """A metric's two per-user measures as counts of events in windows: ``y`` and ``x`` (None: x is
    0, a mean metric without CUPED). With ``indicator`` each is 1 when the count is positive, else 0
    (a conversion)."""

    y: Window
    x: Window | None
    indicator: bool


# --- the backends' answer -----------------------------------------------------------------------

@dataclass(frozen=True)
class MeasureSums:
    """Sums over one arm's users of the per-user measures ``y`` and ``x`` (see module docstring)."""

    sum_y: int
    sum_x: int
    sum_yy: int
    sum_xx: int
    sum_xy: int


@dataclass(frozen=True)
class ExperimentSums:
    """One experiment's exposures and per-arm sums, as both backends compute them.

    ``users`` maps each variant with counted users to their number (variants sorted);
    ``metrics[metric name][variant]`` are the sums over those users. Users exposed to two
    variants are not in any arm (``excluded_multiple_variants``); exposure events without a
    variant are not used (``skipped_without_variant``, a number of events).
    """

    experiment: str
    users: dict[str, int]
    metrics: dict[str, dict[str, MeasureSums]]
    excluded_multiple_variants: int
    skipped_without_variant: int


@dataclass(frozen=True)
class ExposureSums:
    """Every experiment found in exposure events (by key, sorted), and the metric event names
    that never occur in the source (before the end of the snapshot)."""

    experiments: dict[str, ExperimentSums]
    events_not_found: frozenset[str]


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CupedResult:
    """The CUPED-adjusted comparison: ``Y' = Y - theta (X - mean X)``, X the pre-period measure."""

    theta: float | None = declare(
        "cov(Y, X) / var(X) over every exposed user of the experiment (all arms together); 0 when X is "
        "constant (status cuped_constant_covariate)", NUMBER)
    variance_reduction: float | None = declare(
        "1 - var(Y') / var(Y) over every exposed user of the experiment; null when Y is constant", FRACTION)
    absolute_lift: float | None = declare("Adjusted mean minus the control's adjusted mean; treatments only",
                                          NUMBER)
    absolute_lift_ci: tuple[float, float] | None = declare(
        "Interval of the adjusted lift at the experiment's alpha (Bonferroni across treatments); treatments only",
        NUMBER)
    p_value: float | None = declare("Two-sided unpooled z-test on Y'; treatments only", PROBABILITY)


@dataclass(frozen=True)
class MetricVariant:
    """One variant of one metric; the control comes first, with null comparison fields."""

    variant_id: str = declare("The variant, as named in the exposure events", key=True)
    users: int = declare("Exposed users counted in the variant (first exposure, one variant only)", USERS)
    mean: float | None = declare(
        "Per-user mean: share of users who converted (conversion), events per user (count); for a ratio, "
        "the sum of numerators over the sum of denominators", NUMBER)
    std: float | None = declare("Sample standard deviation of the per-user measure (n - 1); null for ratios",
                                NUMBER)
    absolute_lift: float | None = declare("Mean minus the control's mean; treatments only", NUMBER)
    absolute_lift_ci: tuple[float, float] | None = declare(
        "Interval of the absolute lift at the experiment's alpha (Bonferroni across treatments)", NUMBER)
    relative_lift: float | None = declare("Mean over the control's mean, minus 1; treatments only", CHANGE)
    relative_lift_ci: tuple[float, float] | None = declare(
        "Delta-method interval of the relative lift at the same level as the absolute one", CHANGE)
    p_value: float | None = declare(
        "Two-sided z-test with unpooled variances (delta method for ratios), without CUPED; treatments only",
        PROBABILITY)
    adjusted_p_value: float | None = declare(
        "Holm-adjusted across the treatments of the metric, of the decision test: the CUPED test when cuped "
        "is given, else the test of p_value", PROBABILITY)
    cuped: CupedResult | None = declare("The CUPED-adjusted comparison; null for ratios or with CUPED off")
    status_codes: tuple[str, ...] = declare(
        "Why numbers are null or qualified: no_users, too_few_users, denominator_zero, control_unavailable, "
        "zero_variance, baseline_zero")


@dataclass(frozen=True)
class MetricResult:
    """One configured metric of one experiment, every variant compared with the control."""

    metric: str = declare("The metric's configured name", key=True)
    kind: MetricKind = declare("conversion, count or ratio")
    variants: tuple[MetricVariant, ...] = declare("Control first, then the treatments")
    status_codes: tuple[str, ...] = declare(
        "Metric-level conditions: event_not_found (an event it reads never occurs), denominator_zero (every "
        "user's denominator is 0), cuped_constant_covariate (the pre-period measure is the same for everyone)")

    @property
    def variance_reduction(self) -> float | None:
        """CUPED's variance reduction for the experiment (the same on every row), or None."""
        return next((row.cuped.variance_reduction for row in self.variants if row.cuped is not None), None)


@dataclass(frozen=True)
class ExposureCounts:
    """Who was counted in an experiment measured on events."""

    users: int = declare("Users counted in a variant: their first exposure counts", USERS)
    excluded_multiple_variants: int = declare("Users exposed to more than one variant, left out", USERS)
    skipped_without_variant: int = declare("Exposure events without a variant property, not used", COUNT)


@dataclass(frozen=True)
class ExperimentMetrics:
    """What an experiment found in exposure events gains: its ``exposure`` and ``metrics``."""

    exposure: ExposureCounts = declare("Who was counted")
    metrics: tuple[MetricResult, ...] = declare("One entry per configured metric, in configuration order")


# --- analysis -----------------------------------------------------------------------------------

def variant_order(found: Collection[str], configured: Sequence[str] = ()) -> tuple[str, ...]:
    """The variants to report, control first.

    ``configured`` are the experiment's variants as the Experimentation service lists them, its
    control first; variants found only in exposure events follow, sorted. An experiment known only
    from its events (``configured`` empty) has ``control`` as its control when such a variant
    exists, else the first variant in sorted order.
    """
    extra = sorted(set(found) - set(configured))
    if configured:
        return (*configured, *extra)
    if CONTROL_NAME in extra:
        extra.remove(CONTROL_NAME)
        return (CONTROL_NAME, *extra)
    return tuple(extra)


def analyse_experiment_metrics(settings: ExperimentMetricsSettings, sums: ExperimentSums, *,
                               variants: Sequence[str] = (), alpha: float = 0.05,
                               events_not_found: Collection[str] = frozenset()) -> ExperimentMetrics:
    """Every configured metric of one experiment, compared across its variants.

    ``variants`` are the experiment's configured variants, control first (see :func:`variant_order`;
    empty for an experiment known only from its events). ``alpha`` is the experiment's.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (got {alpha})")
    arms = variant_order(sums.users, variants)
    users = [sums.users.get(arm, 0) for arm in arms]
    metrics = tuple(
        _metric_result(metric, arms, users, sums.metrics[metric.name], alpha=alpha,
                       cuped=settings.uses_cuped(metric),
                       event_not_found=any(name in events_not_found for name in metric.events))
        for metric in settings.metrics)
    exposure = ExposureCounts(users=sum(sums.users.values()),
                              excluded_multiple_variants=sums.excluded_multiple_variants,
                              skipped_without_variant=sums.skipped_without_variant)
    return ExperimentMetrics(exposure=exposure, metrics=metrics)


_EMPTY = MeasureSums(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class _ArmMoments:
    """Per arm (control first): users and the sample moments of ``y`` and ``x`` (NaN below two
    users for the variances, without users for the means)."""

    users: np.ndarray
    mean_y: np.ndarray
    mean_x: np.ndarray
    var_y: np.ndarray
    var_x: np.ndarray
    cov: np.ndarray

    @classmethod
    def of(cls, users: Sequence[int], sums: Sequence[MeasureSums]) -> _ArmMoments:
        rows = [_moments(n, s.sum_y, s.sum_x, s.sum_yy, s.sum_xx, s.sum_xy) for n, s in zip(users, sums)]
        columns = np.array(rows, dtype=float).reshape(len(rows), 5).T
        return cls(np.asarray(users, dtype=float), *columns)


def _moments(n: int, sum_y: int, sum_x: int, sum_yy: int, sum_xx: int, sum_xy: int) -> tuple[float, ...]:
    """Means, sample variances and covariance from exact integer sums (one rounding each)."""
    nan = math.nan
    mean_y, mean_x = (sum_y / n, sum_x / n) if n > 0 else (nan, nan)
    if n < 2:
        return mean_y, mean_x, nan, nan, nan
    scale = n * (n - 1)
    return (mean_y, mean_x, (n * sum_yy - sum_y * sum_y) / scale, (n * sum_xx - sum_x * sum_x) / scale,
            (n * sum_xy - sum_y * sum_x) / scale)


@dataclass(frozen=True)
class _Estimate:
    """Per arm: the metric's value and the variance of that estimate (NaN where undefined)."""

    value: np.ndarray
    variance: np.ndarray


def _mean_estimate(moments: _ArmMoments) -> _Estimate:
    return _Estimate(moments.mean_y, moments.var_y / moments.users)


def _ratio_estimate(moments: _ArmMoments) -> _Estimate:
    """``R = mean y / mean x`` and its delta-method variance
    ``(var y - 2 R cov + R^2 var x) / (n mean_x^2)``."""
    has_denominator = moments.mean_x > 0
    mean_x = np.where(has_denominator, moments.mean_x, np.nan)
    ratio = moments.mean_y / mean_x
    spread = moments.var_y - 2.0 * ratio * moments.cov + ratio * ratio * moments.var_x
    return _Estimate(ratio, np.maximum(spread, 0.0) / (moments.users * mean_x * mean_x))


@dataclass(frozen=True)
class _Cuped:
    theta: float
    variance_reduction: float
    adjusted: _Estimate
    constant_covariate: bool


def _cuped(moments: _ArmMoments, users: Sequence[int], sums: Sequence[MeasureSums]) -> _Cuped:
    """Theta pooled over every exposed user of the experiment, and each arm's adjusted mean and its
    variance: ``mean(Y') = mean y - theta (mean x - mean X)``,
    ``var(Y') = var y - 2 theta cov + theta^2 var x`` (the arm's own sample moments)."""
    total = _moments(sum(users), *(sum(getattr(s, name) for s in sums)
                                   for name in ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy")))
    _, mean_x, var_y, var_x, cov = total
    constant_covariate = var_x == 0.0
    theta = 0.0 if constant_covariate else cov / var_x  # Y' = Y when X says nothing
    adjusted_total = max(var_y - 2.0 * theta * cov + theta * theta * var_x, 0.0)
    variance_reduction = min(max(1.0 - adjusted_total / var_y, 0.0), 1.0) if var_y > 0 else math.nan
    value = moments.mean_y - theta * (moments.mean_x - mean_x)
    spread = moments.var_y - 2.0 * theta * moments.cov + theta * theta * moments.var_x
    adjusted = _Estimate(value, np.maximum(spread, 0.0) / moments.users)
    return _Cuped(theta, variance_reduction, adjusted, constant_covariate)


@dataclass(frozen=True)
class _Comparison:
    """Each arm against the control (index 0): NaN where the arm is not compared."""

    difference: np.ndarray
    standard_error: np.ndarray
    p_value: np.ndarray
    zero_variance: np.ndarray


def _compare(estimate: _Estimate, comparable: np.ndarray) -> _Comparison:
    """Unpooled z-test of ``value - control value`` for the ``comparable`` arms."""
    difference = np.where(comparable, estimate.value - estimate.value[0], np.nan)
    standard_error = np.sqrt(estimate.variance + estimate.variance[0])
    tested = comparable & np.isfinite(standard_error)
    zero_variance = tested & (standard_error == 0)
    defined = tested & ~zero_variance
    z = difference / np.where(defined, standard_error, 1.0)
    return _Comparison(difference, np.where(defined, standard_error, np.nan),
                       np.where(defined, two_sided_p_value(z), np.nan), zero_variance)


def _relative(estimate: _Estimate, comparable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``value / control - 1`` and its delta-method SE
    ``sqrt(v_t / c^2 + value^2 v_c / c^4)``; NaN where the control's value is 0."""
    control = estimate.value[0]
    if not math.isfinite(control) or control == 0:  # no relative lift without a baseline
        nothing = np.full(estimate.value.shape, np.nan)
        return nothing, nothing
    value = estimate.value
    lift = np.where(comparable, value / control - 1.0, np.nan)
    variance = estimate.variance / control**2 + value * value * estimate.variance[0] / control**4
    return lift, np.sqrt(variance)


def _interval(estimate: np.ndarray, standard_error: np.ndarray, critical: float, *, lowest: float = -np.inf,
              highest: float = np.inf) -> list[tuple[float, float] | None]:
    """Wald intervals cut to the values the quantity can take (every measure here is non-negative,
    so a relative lift is at least -1, and a difference of conversion rates lies in [-1, 1])."""
    low, high = wald_interval(estimate, standard_error, critical)
    low, high = np.maximum(low, lowest), np.minimum(high, highest)
    defined = np.isfinite(low) & np.isfinite(high) & (standard_error > 0)
    return [(float(lo), float(hi)) if ok else None for lo, hi, ok in zip(low, high, defined)]


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _metric_result(metric: MetricDefinition, arms: Sequence[str], users: Sequence[int],
                   sums: Mapping[str, MeasureSums], *, alpha: float, cuped: bool,
                   event_not_found: bool) -> MetricResult:
    codes = []
    if event_not_found:
        codes.append("event_not_found")
    if not arms:  # only excluded users or variant-less exposures: nobody to compare
        return MetricResult(metric=metric.name, kind=metric.kind, variants=(), status_codes=tuple(codes))
    arm_sums = [sums.get(arm, _EMPTY) for arm in arms]
    moments = _ArmMoments.of(users, arm_sums)
    ratio = metric.kind == "ratio"
    estimate = (_ratio_estimate if ratio else _mean_estimate)(moments)
    is_treatment = np.arange(len(arms)) > 0
    comparable = is_treatment & np.isfinite(estimate.value) & bool(np.isfinite(estimate.value[:1]).all())
    plain = _compare(estimate, comparable)
    adjustment = _cuped(moments, users, arm_sums) if cuped else None
    adjusted = _compare(adjustment.adjusted, comparable) if adjustment else None
    decision = adjusted or plain

    tested = np.isfinite(decision.p_value)
    holm = np.full(len(arms), np.nan)
    holm[tested] = holm_adjust(decision.p_value[tested], np.zeros(int(tested.sum())))
    critical = float(normal_critical_value(alpha / max(int(tested.sum()), 1)))
    relative, relative_se = _relative(estimate, comparable)
    bound = 1.0 if metric.kind == "conversion" else np.inf
    absolute_ci = _interval(plain.difference, plain.standard_error, critical, lowest=-bound, highest=bound)
    relative_ci = _interval(relative, relative_se, critical, lowest=-1.0)
    adjusted_ci = _interval(adjusted.difference, adjusted.standard_error, critical, lowest=-bound,
                            highest=bound) if adjusted else None

    std = np.sqrt(moments.var_y) if not ratio else np.full(len(arms), np.nan)
    rows = []
    for k, arm in enumerate(arms):
        compared = bool(comparable[k])
        cuped_row = None
        if adjustment is not None:
            cuped_row = CupedResult(
                theta=_number(adjustment.theta), variance_reduction=_number(adjustment.variance_reduction),
                absolute_lift=_number(adjusted.difference[k]) if compared else None,
                absolute_lift_ci=adjusted_ci[k] if compared else None,
                p_value=_number(adjusted.p_value[k]))
        rows.append(MetricVariant(
            variant_id=arm, users=int(users[k]), mean=_number(estimate.value[k]), std=_number(std[k]),
            absolute_lift=_number(plain.difference[k]), absolute_lift_ci=absolute_ci[k] if compared else None,
            relative_lift=_number(relative[k]), relative_lift_ci=relative_ci[k] if compared else None,
            p_value=_number(plain.p_value[k]), adjusted_p_value=_number(holm[k]), cuped=cuped_row,
            status_codes=_variant_codes(k, moments, estimate, ratio, bool(decision.zero_variance[k]))))

    if ratio and sum(s.sum_x for s in arm_sums) == 0:
        codes.append("denominator_zero")
    if adjustment is not None and adjustment.constant_covariate:
        codes.append("cuped_constant_covariate")
    return MetricResult(metric=metric.name, kind=metric.kind, variants=tuple(rows), status_codes=tuple(codes))


def _variant_codes(k: int, moments: _ArmMoments, estimate: _Estimate, ratio: bool,
                   zero_variance: bool) -> tuple[str, ...]:
    """Why a row's numbers are null or qualified; ``no_users`` says everything on its own."""
    users = moments.users[k]
    if users == 0:
        return ("no_users",)
    codes = []
    if users == 1:
        codes.append("too_few_users")
    if ratio and not moments.mean_x[k] > 0:
        codes.append("denominator_zero")
    if k > 0 and math.isfinite(estimate.value[k]):
        if not math.isfinite(estimate.value[0]):
            codes.append("control_unavailable")
        else:
            if zero_variance:
                codes.append("zero_variance")
            if estimate.value[0] == 0:
                codes.append("baseline_zero")
    return tuple(codes)


# --- the guardrail ------------------------------------------------------------------------------

def _decision_lift(row: MetricVariant) -> float | None:
    """The lift the decision test judged: CUPED's when it applies."""
    if row.cuped is not None:
        return row.cuped.absolute_lift
    return row.absolute_lift


def _is_harmed(metric: MetricDefinition, row: MetricVariant, alpha: float) -> bool:
    lift = _decision_lift(row)
    if row.adjusted_p_value is None or row.adjusted_p_value >= alpha or lift is None or lift == 0:
        return False
    return (lift < 0) == metric.higher_is_better


def _lift_text(row: MetricVariant) -> str:
    if row.relative_lift is not None and row.relative_lift_ci is not None:
        low, high = row.relative_lift_ci
        return f"{row.relative_lift:+.1%} ({low:+.1%} to {high:+.1%})"
    lift = _decision_lift(row) or 0.0
    return f"{lift:+.4g} per user"


def guardrail_recommendation(recommendation: Recommendation, metrics: Sequence[MetricResult],
                             settings: ExperimentMetricsSettings, *, alpha: float) -> Recommendation:
    """``recommendation`` unless it is ``ship`` and the winner is significantly worse on a
    guardrail metric (Holm-adjusted decision p below ``alpha``, the lift in the harmful direction):
    then ``investigate_guardrail``, with a sentence naming the metric (the most significant harm
    when several guardrails are breached). Only the variant that would be shipped is judged."""
    if recommendation.code != "ship" or recommendation.winner is None:
        return recommendation
    definitions = {metric.name: metric for metric in settings.metrics}
    harms = []
    for result in metrics:
        definition = definitions.get(result.metric)
        row = next((row for row in result.variants[1:] if row.variant_id == recommendation.winner), None)
        if definition is not None and definition.guardrail and row is not None and \
                _is_harmed(definition, row, alpha):
            harms.append((row.adjusted_p_value, result.metric, row))
    if not harms:
        return recommendation
    _, name, row = min(harms, key=lambda harm: harm[0])
    direction = "lower" if definitions[name].higher_is_better else "higher"
    return Recommendation(
        GUARDRAIL_CODE,
        f"{recommendation.winner} wins on the primary metric but is worse on the guardrail metric {name} "
        f"({direction} is worse): {_lift_text(row)}, adjusted {_p(row.adjusted_p_value)}; investigate before "
        "shipping.")

