"""Batch analysis of experiments: flatten every arm of every experiment, compute once, assemble.

All statistics run on flat numpy arrays (one element per arm, each arm aligned with its
experiment's control), so 1,000 experiments cost a handful of vector operations; only the
assembly of the JSON-ready dicts loops in Python.

Choices the method table leaves open, resolved here:

* **Intervals with several treatments.** The decision uses Holm-adjusted p-values. Lift
  intervals are simultaneous Bonferroni intervals at ``alpha / m`` (``m`` = treatments compared),
  the interval counterpart of Holm (GrowthBook's adjusted intervals do the same). With one
  treatment they are exactly dual to the test; with several, an interval that excludes 0 always
  comes with a significant result (a significant result may still have an interval touching 0).
* **Which p-value decides.** ``p_value`` is always the fixed-horizon unpooled z-test and
  ``p_value_pooled`` its pooled textbook twin. In sequential mode (no planned size) the decision
  uses ``sequential_p_value``, the always-valid p-value of the confidence sequence
  (``sequential.py``), and the intervals are the sequence itself; in fixed mode it uses
  ``p_value``. ``adjusted_p_value`` is Holm's adjustment of the deciding one, and the
  recommendation's sentence says which it is.
* **Significance a data gate withholds.** While the sample-ratio or the too-little-data gate
  decides (``investigate_srm``, ``insufficient_data``), no result is called significant: the
  experiment's and the variants' ``is_significant`` are false and the status code
  ``significance_withheld`` says why.
* **Required sample size** uses the per-comparison alpha ``alpha / m``, matching the intervals,
  and is computed from the control's current rate; ``sample_progress`` is the smallest arm's
  share of it, capped at 1.
* **Expected loss** is in absolute rate units (probability points), like ``absolute_lift``.
* **Bad input** (conversions above assignments, negative counts, alpha outside (0, 1), ...)
  makes that one experiment unavailable with a status code naming the problem; the rest of the
  batch is analysed as usual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..intervals import wilson_interval
from .bayesian import compare_beta_posteriors
from .frequentist import (
    difference_test,
    fieller_relative_interval,
    holm_adjust,
    normal_critical_value,
    wald_interval,
)
from .inputs import ExperimentInput, input_problem
from .moments import ArmMoments, arm_moments
from .power import FORMULA_NAME, required_sample_size_array, sample_progress
from .recommend import ExperimentOutcome, TreatmentOutcome, recommend
from .report import (
    ExperimentResult,
    SampleRatio,
    VariantResult,
    experiment_header,
    json_intervals,
    json_numbers,
    unavailable_experiment,
    variant_row,
)
from .sequential import always_valid_p_value, critical_value, mixing_rho_squared
from .srm import sample_ratio_mismatch

# Gates that decide before any comparison is looked at: a significant result under them is withheld.
DATA_GATES = ("investigate_srm", "insufficient_data")
SIGNIFICANCE_WITHHELD = "significance_withheld"


def analyse_experiments(experiments: Sequence[ExperimentInput]) -> list[ExperimentResult]:
    """Analyse a batch of experiments; one result per experiment, in input order.

    Experiments with invalid input come back as ``unavailable_experiment(experiment, <problem>)``.
    """
    problems = [input_problem(e) for e in experiments]
    valid = [e for e, problem in zip(experiments, problems) if problem is None]
    columns, per_experiment = _compute(valid) if valid else ({}, {})
    results: list[ExperimentResult] = []
    position = 0
    arm_offset = 0
    for experiment, problem in zip(experiments, problems):
        if problem is not None:
            results.append(unavailable_experiment(experiment, problem))
            continue
        results.append(
            _experiment_object(experiment, columns, per_experiment, position, arm_offset)
        )
        position += 1
        arm_offset += len(experiment.arms)
    return results


@dataclass(frozen=True)
class _Batch:
    """All arms of all experiments as flat arrays; ``control_of`` aligns each arm with its
    experiment's control, and per-experiment settings are broadcast to the arms."""

    experiment: np.ndarray
    first_arm: np.ndarray
    control_of: np.ndarray
    alpha: np.ndarray
    sequential: np.ndarray
    weight: np.ndarray
    arm: ArmMoments
    control: ArmMoments

    @classmethod
    def of(cls, experiments: Sequence[ExperimentInput]) -> "_Batch":
        sizes = np.array([len(e.arms) for e in experiments], dtype=np.int64)
        first_arm = np.cumsum(sizes) - sizes
        experiment = np.repeat(np.arange(len(experiments)), sizes)
        arms = [arm for e in experiments for arm in e.arms]
        arm = arm_moments([a.assignments for a in arms], [a.conversions for a in arms])
        return cls(
            experiment=experiment,
            first_arm=first_arm,
            control_of=first_arm[experiment],
            alpha=np.array([e.alpha for e in experiments], dtype=float)[experiment],
            sequential=np.array([e.planned_n_per_arm is None for e in experiments])[experiment],
            weight=np.array([np.nan if a.weight is None else a.weight for a in arms], dtype=float),
            arm=arm,
            control=arm.take(first_arm[experiment]),
        )


def _compute(experiments: Sequence[ExperimentInput]) -> tuple[dict[str, list], dict[str, list]]:
    """Every statistic for every arm and every experiment, as JSON-clean lists keyed by field."""
    batch = _Batch.of(experiments)
    arm, control = batch.arm, batch.control
    is_treatment = np.arange(arm.rate.size) != batch.control_of

    test = difference_test(arm, control)
    compared = is_treatment & np.isfinite(test.p_value)
    units = arm.assignments + control.assignments
    rho_squared = mixing_rho_squared(batch.alpha)
    sequential_p_value = np.where(compared & batch.sequential,
                                  always_valid_p_value(test.z, units, rho_squared), np.nan)
    deciding = np.where(compared, np.where(batch.sequential, sequential_p_value, test.p_value), np.nan)
    adjusted = np.full_like(deciding, np.nan)
    adjusted[compared] = holm_adjust(deciding[compared], batch.experiment[compared])

    comparisons = np.bincount(batch.experiment[compared], minlength=len(experiments))
    family_alpha = batch.alpha / np.maximum(comparisons[batch.experiment], 1)
    critical = np.where(
        batch.sequential,
        critical_value(units, family_alpha, rho_squared),
        normal_critical_value(family_alpha),
    )
    interval_defined = compared & ~test.zero_variance
    absolute_low, absolute_high = wald_interval(test.difference, test.standard_error, critical)
    baseline_zero = compared & (control.rate == 0)
    has_baseline = compared & ~baseline_zero
    relative_lift = arm.rate / np.where(has_baseline, control.rate, 1.0) - 1.0
    relative_low, relative_high, bounded = fieller_relative_interval(arm, control, critical)
    relative_defined = interval_defined & has_baseline & bounded
    chance, loss, approximate = _bayesian(arm, control, compared)
    wilson_low, wilson_high = wilson_interval(arm.conversions, arm.assignments)
    srm = sample_ratio_mismatch(arm.assignments, batch.weight, batch.experiment, len(experiments))
    required = required_sample_size_array(
        arm.rate[batch.first_arm],
        np.array([e.mde_relative for e in experiments], dtype=float),
        batch.alpha[batch.first_arm] / np.maximum(comparisons, 1),
    )

    def only(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.where(mask, values, np.nan)

    per_arm = {
        "conversion_rate": json_numbers(arm.rate),
        "confidence_interval_low": json_numbers(wilson_low),
        "confidence_interval_high": json_numbers(wilson_high),
        "absolute_lift": json_numbers(test.difference),
        "absolute_lift_ci": json_intervals(
            only(interval_defined, np.maximum(absolute_low, -1.0)),
            only(interval_defined, np.minimum(absolute_high, 1.0)),
        ),
        "relative_lift": json_numbers(only(has_baseline, relative_lift)),
        "relative_lift_ci": json_intervals(
            only(relative_defined, relative_low), only(relative_defined, relative_high)
        ),
        "p_value": json_numbers(only(compared, test.p_value)),
        "p_value_pooled": json_numbers(test.p_value_pooled),
        "sequential_p_value": json_numbers(sequential_p_value),
        "adjusted_p_value": json_numbers(adjusted),
        "is_significant": (compared & (adjusted < batch.alpha)).tolist(),
        "chance_to_beat_control": json_numbers(chance),
        "expected_loss": json_numbers(loss),
        "compared": compared.tolist(),
        "srm_expected": json_numbers(srm.expected),
        "status_codes": _status_codes(
            empty=~arm.has_data,
            control_empty=is_treatment & ~control.has_data,
            zero_variance=test.zero_variance & compared,
            baseline_zero=baseline_zero,
            ratio_ci_unbounded=interval_defined & has_baseline & ~bounded,
            bayes_normal_approximation=approximate,
        ),
    }
    per_experiment = {
        "srm_p_value": json_numbers(srm.p_value),
        "srm_level": srm.level,
        "srm_reason": srm.reason,
        "required": json_numbers(required),
    }
    return per_arm, per_experiment


def _bayesian(arm: ArmMoments, control: ArmMoments, compared: np.ndarray):
    """Chance to beat control, expected loss and the normal-approximation flag per arm,
    computed for the compared treatment arms only (NaN / False elsewhere)."""
    chance = np.full(compared.size, np.nan)
    loss = np.full(compared.size, np.nan)
    approximate = np.zeros(compared.size, dtype=bool)
    result = compare_beta_posteriors(arm.take(compared), control.take(compared))
    chance[compared] = result.chance_to_beat_control
    loss[compared] = result.expected_loss
    approximate[compared] = result.normal_approximation
    return chance, loss, approximate


def _status_codes(
    empty: np.ndarray, control_empty: np.ndarray, **flags: np.ndarray
) -> list[list[str]]:
    """Per arm: why numbers are null or qualified. An empty arm or an empty control says only
    that; otherwise every raised flag is named (in the order given)."""
    names = list(flags)
    columns = (flag.tolist() for flag in flags.values())
    rows = zip(empty.tolist(), control_empty.tolist(), *columns)
    return [
        ["no_assignments"] if is_empty
        else ["control_no_assignments"] if no_control
        else [name for name, raised in zip(names, raised_flags) if raised]
        for is_empty, no_control, *raised_flags in rows
    ]


def _experiment_object(
    experiment: ExperimentInput,
    per_arm: Mapping[str, list],
    per_experiment: Mapping[str, list],
    position: int,
    arm_offset: int,
) -> ExperimentResult:
    """Assemble one experiment's result from the batch columns."""
    arms = experiment.arms
    variants = [
        variant_row(arm, per_arm, arm_offset + k, is_control=(k == 0)) for k, arm in enumerate(arms)
    ]
    treatments = tuple(_treatment_outcome(row) for row in variants[1:])
    srm_expected = per_arm["srm_expected"][arm_offset : arm_offset + len(arms)]
    srm_level = per_experiment["srm_level"][position]
    srm_p_value = per_experiment["srm_p_value"][position]
    required_float = per_experiment["required"][position]
    required = int(required_float) if required_float is not None else None
    smallest_arm = min(arm.assignments for arm in arms)

    decision = recommend(
        ExperimentOutcome(
            control=arms[0].name,
            arm_names=tuple(arm.name for arm in arms),
            assignments=tuple(arm.assignments for arm in arms),
            conversions=tuple(arm.conversions for arm in arms),
            treatments=treatments,
            srm_level=srm_level,
            srm_p_value=srm_p_value,
            srm_expected=tuple(srm_expected),
            sequential=experiment.planned_n_per_arm is None,
            planned_n_per_arm=experiment.planned_n_per_arm,
            required_sample_size=required,
            mde_relative=experiment.mde_relative,
            stopped=experiment.status == "stopped",
        )
    )
    adjusted = [t.adjusted_p_value for t in treatments if t.adjusted_p_value is not None]
    status_codes = [code for code in (per_experiment["srm_reason"][position],) if code]
    if required is None and arms[0].assignments > 0 and len(arms) > 1:
        status_codes.append("required_size_unknown")
    if decision.code in DATA_GATES and any(t.is_significant for t in treatments):
        status_codes.append(SIGNIFICANCE_WITHHELD)
        variants = [_withheld(row) if row.is_significant else row for row in variants]
    return ExperimentResult(
        **experiment_header(experiment),
        variants=tuple(variants),
        srm=SampleRatio(
            p_value=srm_p_value,
            level=srm_level,
            expected={arm.name: value for arm, value in zip(arms, srm_expected)},
            observed={arm.name: int(arm.assignments) for arm in arms},
        ),
        p_value=min(adjusted) if adjusted else None,
        is_significant=any(row.is_significant for row in variants[1:]),
        winner=decision.winner,
        required_sample_size=required,
        required_sample_size_formula=FORMULA_NAME,
        sample_progress=sample_progress(smallest_arm, required),
        recommendation=decision.code,
        recommendation_text=decision.text,
        status_codes=tuple(status_codes),
    )


def _withheld(row: VariantResult) -> VariantResult:
    return dataclasses.replace(row, is_significant=False, status_codes=(*row.status_codes, SIGNIFICANCE_WITHHELD))


def _treatment_outcome(row: VariantResult) -> TreatmentOutcome:
    """The gate's view of one treatment row (comparison fields are None when not compared)."""
    return TreatmentOutcome(
        name=row.name,
        is_significant=bool(row.is_significant),
        adjusted_p_value=row.adjusted_p_value,
        absolute_lift=row.absolute_lift,
        absolute_lift_ci=row.absolute_lift_ci,
        relative_lift=row.relative_lift,
        relative_lift_ci=row.relative_lift_ci,
        chance_to_beat_control=row.chance_to_beat_control,
    )

