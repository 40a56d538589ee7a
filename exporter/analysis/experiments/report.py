"""The JSON shape of one experiment (contract section 4.1): rows, headers, the unavailable case.

Every number passes through ``json_numbers`` / ``json_intervals`` / ``finite_or_none``, so NaN
and infinity can never reach the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

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
    "sequential_p_value",
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


def json_numbers(values: np.ndarray) -> list[float | None]:
    """An array as a list of floats with every NaN or infinity replaced by None."""
    finite = np.isfinite(values).tolist()
    return [value if ok else None for value, ok in zip(values.tolist(), finite)]


def json_intervals(low: np.ndarray, high: np.ndarray) -> list[list[float] | None]:
    """``[low, high]`` pairs, None wherever either bound is not a finite number."""
    finite = (np.isfinite(low) & np.isfinite(high)).tolist()
    return [[lo, hi] if ok else None for lo, hi, ok in zip(low.tolist(), high.tolist(), finite)]


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
        "analysis_mode": (
            "sequential" if getattr(experiment, "planned_n_per_arm", None) is None else "fixed"
        ),
        "multiple_testing": MULTIPLE_TESTING,
    }


def variant_row(
    arm: Any, columns: Mapping[str, list], index: int, is_control: bool
) -> dict[str, Any]:
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
    row["status_codes"] = columns["status_codes"][index]
    return row


def unavailable_experiment(
    experiment: ExperimentMetadata, status_code: str = "upstream_error"
) -> dict[str, Any]:
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
        "recommendation_text": (
            f"No statistics are available for this experiment ({status_code.replace('_', ' ')})."
        ),
        "status_codes": [status_code],
    }
