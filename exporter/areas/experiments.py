"""Experiment results: the Experimentation Service's counts, analysed by our own engine.

(docs/api.md#experiment-results, docs/methods.md#experiments)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..analysis.experiments import (
    ArmInput,
    ExperimentInput,
    ExperimentResult,
    analyse_experiments,
    unavailable_experiment,
)
from ..results import declare
from ..sources.experimentation import STATUSES, Experiment, ExperimentationClient, ExperimentReading
from .base import Area, Context
from .params import Param


@dataclass(frozen=True)
class ExperimentResults:
    """Every experiment the Experimentation Service lists (with the status asked for)."""

    experiments: tuple[ExperimentResult, ...] = declare("in the upstream's order")


class ExperimentsArea(Area):
    name = "experiment_results"
    path = "/api/v1/experiment-results"
    result = ExperimentResults
    title = "Experiment results"
    sources = ("experimentation",)
    query = {"status": Param(STATUSES, None, description="only experiments with this status (default: all)")}

    def __init__(self, context: Context, experimentation: ExperimentationClient | None) -> None:
        super().__init__(context)
        self.experimentation = experimentation

    async def compute(self, params: dict[str, Any]) -> ExperimentResults:
        readings = await self.experimentation.read_experiments(params.get("status"))
        return ExperimentResults(tuple(analyse_readings(readings)))

    def metric_params(self) -> list[dict[str, Any]]:
        return [{}]  # every status: the collector picks the experiments it may publish


def analyse_readings(readings: Sequence[ExperimentReading]) -> list[ExperimentResult]:
    """One result per reading, in order; those without counts come back unavailable."""
    analysed = iter(analyse_experiments([experiment_input(r.experiment, r.counts) for r in readings
                                         if r.counts is not None]))
    return [next(analysed) if r.counts is not None else unavailable_experiment(r.experiment, r.problem)
            for r in readings]


def experiment_input(experiment: Experiment, counts: dict[str, tuple[int, int]]) -> ExperimentInput:
    """The engine's input: the experiment's settings with each variant's (assignments, conversions)."""
    arms = tuple(ArmInput(arm.name, *counts[arm.name], weight=arm.weight) for arm in experiment.arms)
    return ExperimentInput(experiment_id=experiment.experiment_id, name=experiment.name, status=experiment.status,
                           start_date=experiment.start_date, end_date=experiment.end_date, arms=arms,
                           alpha=experiment.alpha, planned_n_per_arm=experiment.planned_n_per_arm)
