"""The JSON shape of one experiment (contract section 4.1): rows, headers, the unavailable case.

Every number passes through ``finite_or_none``, so NaN and infinity can never reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from ..numbers import finite_or_none
from .power import FORMULA_NAME

MULTIPLE_TESTING = "holm"

COMPARISON_FIELDS = (
    "absolute_lift",
    "absolute_lift_ci",
    "relative_lift",
    "relative_lift_ci",
    "p_value",
    "p_value_pooled",
    "adjusted_p_value",
    "is_significant",
    "chance_to_beat_control",
    "expected_loss",
)


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


def interval(low: float, high: float) -> list[float] | None:
    """``[low, high]`` when both bounds are finite numbers, else None."""
    low_value, high_value = finite_or_none(low), finite_or_none(high)
    if low_value is None or high_value is None:
        return None
    return [low_value, high_value]


def experiment_header(experiment: ExperimentMetadata) -> dict[str, Any]:
    """The identifying fields that open every experiment object, in contract order."""
    arms = experiment.arms
    return {
        "experiment_id": experiment.experiment_id,
        "experiment_name": experiment.name,
        "status": experiment.status,
        "start_date": iso_utc(experiment.start_date),
        "end_date": iso_utc(experiment.end_date),
        "control": arms[0].name if arms else None,
        "alpha": finite_or_none(getattr(experiment, "alpha", None)),
        "analysis_mode": "fixed" if getattr(experiment, "planned_n_per_arm", None) else "sequential",
        "multiple_testing": MULTIPLE_TESTING,
    }


def variant_row(arm: Any, values: Mapping[str, list], index: int, is_control: bool) -> dict[str, Any]:
    """One variant's row from the per-arm result columns at ``index``; the control's comparison
    fields are null."""
    row: dict[str, Any] = {
        "variant_id": arm.name,
        "name": arm.name,
        "assignments": int(arm.assignments),
        "conversions": int(arm.conversions),
        "conversion_rate": finite_or_none(values["rate"][index]),
        "confidence_interval_low": finite_or_none(values["wilson_low"][index]),
        "confidence_interval_high": finite_or_none(values["wilson_high"][index]),
    }
    compared = values["compared"][index]
    if is_control or not compared:
        row.update(dict.fromkeys(COMPARISON_FIELDS))
    else:
        row.update(
            {
                "absolute_lift": finite_or_none(values["absolute_lift"][index]),
                "absolute_lift_ci": interval(values["absolute_low"][index], values["absolute_high"][index]),
                "relative_lift": finite_or_none(values["relative_lift"][index]),
                "relative_lift_ci": interval(values["relative_low"][index], values["relative_high"][index]),
                "p_value": finite_or_none(values["p_value"][index]),
                "p_value_pooled": finite_or_none(values["p_value_pooled"][index]),
                "adjusted_p_value": finite_or_none(values["adjusted_p_value"][index]),
                "is_significant": bool(values["is_significant"][index]),
                "chance_to_beat_control": finite_or_none(values["chance"][index]),
                "expected_loss": finite_or_none(values["loss"][index]),
            }
        )
    row["status_codes"] = _variant_status_codes(arm, values, index, is_control)
    return row


_FLAGGED_CODES = ("zero_variance", "baseline_zero", "ratio_ci_unbounded", "normal_approximation")


def _variant_status_codes(arm: Any, values: Mapping[str, list], index: int, is_control: bool) -> list[str]:
    if arm.assignments == 0:
        return ["no_assignments"]
    if not is_control and not values["compared"][index]:
        return ["control_no_assignments"]
    return [code for code in _FLAGGED_CODES if values[code][index]]


def unavailable_experiment(experiment: ExperimentMetadata, status_code: str = "upstream_error") -> dict[str, Any]:
    """The object for an experiment whose statistics could not be obtained or analysed.

    Variants come from the metadata with null numbers, SRM is ``not_computable`` and the
    recommendation is ``no_data``; ``status_code`` says why (``upstream_error`` by default).
    """
    names = [arm.name for arm in experiment.arms]
    variants = [
        {
            "variant_id": name,
            "name": name,
            "assignments": None,
            "conversions": None,
            "conversion_rate": None,
            "confidence_interval_low": None,
            "confidence_interval_high": None,
            **dict.fromkeys(COMPARISON_FIELDS),
            "status_codes": [],
        }
        for name in names
    ]
    return {
        **experiment_header(experiment),
        "variants": variants,
        "srm": {
            "p_value": None,
            "level": "not_computable",
            "expected": dict.fromkeys(names),
            "observed": dict.fromkeys(names),
        },
        "p_value": None,
        "is_significant": False,
        "winner": None,
        "required_sample_size": None,
        "required_sample_size_formula": FORMULA_NAME,
        "sample_progress": None,
        "recommendation": "no_data",
        "recommendation_text": f"No statistics are available for this experiment ({status_code.replace('_', ' ')}).",
        "status_codes": [status_code],
    }
