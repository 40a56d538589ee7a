"""The result of one experiment (docs/api.md#experiment-results): rows, headers, the unavailable case.

Every number passes through ``json_numbers`` / ``json_intervals`` / ``finite_or_none``, so NaN
and infinity can never reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

import numpy as np

from ...results import CHANGE, FRACTION, NUMBER, PROBABILITY, USERS, Timestamp, declare, status_codes
from ..numbers import finite_or_none
from .event_metrics import ExposureCounts, MetricResult
from .power import FORMULA_NAME

Recommendation = Literal["ship", "roll_back", "keep_running", "inconclusive", "insufficient_data", "investigate_srm",
                         "no_data", "no_comparison", "investigate_guardrail"]

MULTIPLE_TESTING = "holm"

COMPARISON_FIELDS = (
    "absolute_lift",
    "absolute_lift_ci",
    "relative_lift",
    "relative_lift_ci",
    "p_value",
    "p_value_pooled",
    "sequential_p_value",
    "adjusted_p_value",
    "is_significant",
    "chance_to_beat_control",
    "expected_loss",
)


@dataclass(frozen=True)
class VariantResult:
    """One arm of an experiment; the control's comparison fields are null."""

    variant_id: str = declare("the variant's name upstream", key=True)
    name: str = declare("the variant's name")
    assignments: int | None = declare("users assigned to the variant", USERS)
    conversions: int | None = declare("assigned users with at least one of the experiment's metric events", USERS)
    conversion_rate: float | None = declare("conversions / assignments", FRACTION)
    confidence_interval_low: float | None = declare("Wilson 95% interval of conversion_rate, low end", FRACTION)
    confidence_interval_high: float | None = declare("Wilson 95% interval of conversion_rate, high end", FRACTION)
    absolute_lift: float | None = declare("conversion rate minus the control's", CHANGE)
    absolute_lift_ci: tuple[float, float] | None = declare("interval of absolute_lift at the experiment's alpha",
                                                           CHANGE)
    relative_lift: float | None = declare("conversion rate over the control's, minus 1", CHANGE)
    relative_lift_ci: tuple[float, float] | None = declare("Fieller interval of relative_lift", CHANGE)
    p_value: float | None = declare("fixed-horizon two-sided unpooled z-test", PROBABILITY)
    p_value_pooled: float | None = declare("the same test with the pooled standard error", PROBABILITY)
    sequential_p_value: float | None = declare(
        "always-valid p-value of the confidence sequence (sequential mode only)", PROBABILITY)
    adjusted_p_value: float | None = declare(
        "the deciding p-value (sequential_p_value in sequential mode, else p_value), Holm-adjusted over the "
        "treatment arms", PROBABILITY)
    is_significant: bool | None = declare("adjusted_p_value below alpha, unless a data gate withholds it")
    chance_to_beat_control: float | None = declare("posterior probability of converting better than the control",
                                                   PROBABILITY)
    expected_loss: float | None = declare("expected loss of shipping the variant, in conversion-rate points",
                                          NUMBER)
    status_codes: tuple[str, ...] = status_codes()


@dataclass(frozen=True)
class SampleRatio:
    """Sample-ratio-mismatch check of the assignments against the configured allocations."""

    p_value: float | None = declare("Pearson chi-square p-value", PROBABILITY)
    level: Literal["ok", "warn", "fail", "not_computable"] = declare("fail below 0.001, warn below 0.01")
    expected: dict[str, float | None] = declare("expected assignments per variant", USERS)
    observed: dict[str, int | None] = declare("assignments per variant", USERS)


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment, analysed by this service from the upstream's assignment and conversion counts."""

    experiment_id: str = declare("the experiment's id upstream", key=True)
    experiment_name: str = declare("the experiment's name")
    status: str = declare("as the Experimentation Service reports it (draft, running, stopped); events_only for an "
                          "experiment known only from its exposure events")
    start_date: Timestamp | None = declare("when it started")
    end_date: Timestamp | None = declare("when it stopped")
    control: str | None = declare("the control variant (the first)")
    alpha: float | None = declare("significance level", PROBABILITY)
    analysis_mode: Literal["fixed", "sequential"] = declare(
        "fixed (a planned sample size) or sequential (confidence sequences)")
    multiple_testing: str = declare("adjustment over the treatment arms")
    variants: tuple[VariantResult, ...] = declare("control first")
    srm: SampleRatio = declare("the sample-ratio-mismatch check")
    p_value: float | None = declare("the smallest adjusted p over the treatment arms", PROBABILITY)
    is_significant: bool = declare("a treatment is significant and no data gate withholds it")
    winner: str | None = declare("the variant to ship, when the recommendation is ship")
    required_sample_size: int | None = declare("users per arm needed to detect the minimum detectable effect",
                                               USERS)
    required_sample_size_formula: str = declare("how required_sample_size is computed")
    sample_progress: float | None = declare("smallest arm / required_sample_size, capped at 1", FRACTION)
    recommendation: Recommendation = declare(
        "what to do; investigate_guardrail: the primary metric says ship, but a guardrail metric measured on the "
        "events is significantly worse")
    recommendation_text: str = declare("one sentence with the numbers behind the recommendation")
    exposure: ExposureCounts | None = declare(
        "who was counted in the experiment's exposure events; present when the experiment appears in them "
        "(docs/experiment-metrics.md)", omit_if_none=True)
    metrics: tuple[MetricResult, ...] | None = declare(
        "the configured metrics measured on the identified events, in configuration order; present with exposure",
        omit_if_none=True)
    status_codes: tuple[str, ...] = status_codes()


class ExperimentMetadata(Protocol):
    """What the header and ``unavailable_experiment`` read: an ``ExperimentInput`` or anything
    shaped like it (``alpha`` and ``planned_n_per_arm`` optional; arms need only a ``name``)."""

    experiment_id: str
    name: str
    status: str
    start_date: datetime | None
    end_date: datetime | None
    arms: Sequence[Any]


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix; a naive datetime is taken to be UTC already."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def json_numbers(values: np.ndarray) -> list[float | None]:
    """An array as a list of floats with every NaN or infinity replaced by None."""
    finite = np.isfinite(values).tolist()
    return [value if ok else None for value, ok in zip(values.tolist(), finite)]


def json_intervals(low: np.ndarray, high: np.ndarray) -> list[list[float] | None]:
    """``[low, high]`` pairs, None wherever either bound is not a finite number."""
    finite = (np.isfinite(low) & np.isfinite(high)).tolist()
    return [[lo, hi] if ok else None for lo, hi, ok in zip(low.tolist(), high.tolist(), finite)]


def experiment_header(experiment: ExperimentMetadata) -> dict[str, Any]:
    """The identifying fields that open every experiment result, as keyword arguments."""
    arms = experiment.arms
    return {
        "experiment_id": experiment.experiment_id,
        "experiment_name": experiment.name,
        "status": experiment.status,
        "start_date": iso_utc(experiment.start_date),
        "end_date": iso_utc(experiment.end_date),
        "control": arms[0].name if arms else None,
        "alpha": finite_or_none(getattr(experiment, "alpha", None)),
        "analysis_mode": (
            "sequential" if getattr(experiment, "planned_n_per_arm", None) is None else "fixed"
        ),
        "multiple_testing": MULTIPLE_TESTING,
    }


def variant_row(
    arm: Any, columns: Mapping[str, list], index: int, is_control: bool
) -> VariantResult:
    """One variant's row from JSON-clean per-arm columns (keyed by output field) at ``index``.

    The control's comparison fields are null, and so are those of a treatment that could not be
    compared (an empty arm or an empty control).
    """
    row: dict[str, Any] = {
        "variant_id": arm.name,
        "name": arm.name,
        "assignments": int(arm.assignments),
        "conversions": int(arm.conversions),
        "conversion_rate": columns["conversion_rate"][index],
        "confidence_interval_low": columns["confidence_interval_low"][index],
        "confidence_interval_high": columns["confidence_interval_high"][index],
    }
    if is_control or not columns["compared"][index]:
        row.update(dict.fromkeys(COMPARISON_FIELDS))
    else:
        row.update({field: columns[field][index] for field in COMPARISON_FIELDS})
    row["status_codes"] = tuple(columns["status_codes"][index])
    row["absolute_lift_ci"] = _pair(row["absolute_lift_ci"])
    row["relative_lift_ci"] = _pair(row["relative_lift_ci"])
    return VariantResult(**row)


def _pair(interval: Sequence[float] | None) -> tuple[float, float] | None:
    return None if interval is None else (interval[0], interval[1])


def unavailable_experiment(
    experiment: ExperimentMetadata, status_code: str = "upstream_error"
) -> ExperimentResult:
    """The object for an experiment whose statistics could not be obtained or analysed.

    Variants come from the metadata with null numbers, SRM is ``not_computable`` and the
    recommendation is ``no_data``; ``status_code`` says why (``upstream_error`` by default).
    """
    names = [arm.name for arm in experiment.arms]
    variants = tuple(
        VariantResult(variant_id=name, name=name, assignments=None, conversions=None, conversion_rate=None,
                      confidence_interval_low=None, confidence_interval_high=None,
                      **dict.fromkeys(COMPARISON_FIELDS))
        for name in names
    )
    return ExperimentResult(
        **experiment_header(experiment),
        variants=variants,
        srm=SampleRatio(p_value=None, level="not_computable", expected=dict.fromkeys(names),
                        observed=dict.fromkeys(names)),
        p_value=None,
        is_significant=False,
        winner=None,
        required_sample_size=None,
        required_sample_size_formula=FORMULA_NAME,
        sample_progress=None,
        recommendation="no_data",
        recommendation_text=f"No statistics are available for this experiment ({status_code.replace('_', ' ')}).",
        status_codes=(status_code,),
    )
