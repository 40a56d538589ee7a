"""Experiment results: the Experimentation Service's counts, analysed by our own engine (contract §4.1)."""

from __future__ import annotations

from typing import Any, Sequence

from ..analysis.experiments import analyse_experiments, unavailable_experiment
from ..collectors.experiments import ExperimentsCollector
from ..sources.experimentation import ExperimentReading
from .base import Area


class ExperimentsArea(Area):
    name = "experiment_results"
    sources = ("experimentation",)

    async def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        readings = await self.service.experimentation.read_experiments(params.get("status"))
        return {"experiments": analyse_readings(readings)}

    def metric_params(self) -> list[dict[str, Any]]:
        return [{}]  # every status: the collector picks the experiments it may publish

    def collector(self) -> ExperimentsCollector:
        return ExperimentsCollector(self)


def analyse_readings(readings: Sequence[ExperimentReading]) -> list[dict[str, Any]]:
    """One experiment object per reading, in order; those without counts come back unavailable."""
    analysed = iter(analyse_experiments([r.analysis_input for r in readings if r.analysis_input is not None]))
    return [next(analysed) if r.analysis_input is not None else unavailable_experiment(r.experiment, r.problem)
            for r in readings]
