"""What the experiment engine analyses: per-arm sufficient statistics plus experiment settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ArmInput:
    """One variant's counts. ``weight`` is its configured allocation (None when unknown)."""

    name: str
    assignments: int
    conversions: int
    weight: float | None


@dataclass(frozen=True)
class ExperimentInput:
    """One experiment; ``arms[0]`` is the control.

    ``planned_n_per_arm`` None means no fixed design, so the engine uses sequential mode.
    """

    experiment_id: str
    name: str
    status: str
    start_date: datetime | None
    end_date: datetime | None
    arms: tuple[ArmInput, ...]
    alpha: float = 0.05
    planned_n_per_arm: int | None = None
    mde_relative: float = 0.10


def input_problem(experiment: ExperimentInput) -> str | None:
    """Status code naming why an experiment cannot be analysed, or None when it can.

    Bad upstream data makes one experiment unavailable instead of failing the whole batch.
    """
    if not experiment.arms:
        return "no_variants"
    for arm in experiment.arms:
        if not (0 <= arm.conversions <= arm.assignments):
            return "invalid_counts"
    if not (isinstance(experiment.alpha, (int, float)) and 0.0 < experiment.alpha < 1.0):
        return "invalid_alpha"
    if not (math.isfinite(experiment.mde_relative) and experiment.mde_relative > 0.0):
        return "invalid_mde"
    if experiment.planned_n_per_arm is not None and experiment.planned_n_per_arm <= 0:
        return "invalid_planned_size"
    return None
