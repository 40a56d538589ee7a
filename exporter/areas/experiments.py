"""Experiment results: the Experimentation Service's counts, analysed by our own engine, and the
experiments' metrics measured on the identified events when ``experiment_metrics`` is configured.

(docs/api.md#experiment-results, docs/methods.md#experiments, docs/experiment-metrics.md)

The Experimentation Service owns the section: its failure fails the refresh. The events are one
question per snapshot (every experiment's exposures and per-arm sums at once); when they cannot
be read, the read-outs are served without metrics, with a status code, and the events source is
marked down. Without the Experimentation Service (disabled), every experiment found in exposure
events is reported as ``events_only``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..analysis.experiments import (
    ArmInput,
    ExperimentInput,
    ExperimentResult,
    analyse_experiments,
    unavailable_experiment,
)
from ..analysis.experiments.event_metrics import (
    ExperimentMetricsSettings,
    ExperimentSums,
    ExposureSums,
    analyse_experiment_metrics,
    variant_order,
)
from ..analysis.experiments.measured import (
    events_only_experiment,
    usable_alpha,
    with_event_metrics,
    without_event_metrics,
)
from ..errors import SourceError
from ..events.backend import EventsBackend
from ..results import declare
from ..sources.experimentation import STATUSES, Experiment, ExperimentationClient, ExperimentReading
from .base import Area, Context
from .params import Param

MAX_EVENTS_ONLY = 100  # experiments listed that only the exposure events know
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentResults:
    """Every experiment the Experimentation Service lists (with the status asked for), and, with
    experiment_metrics and no status asked for, those found only in exposure events."""

    experiments: tuple[ExperimentResult, ...] = declare(
        "the Experimentation Service's, sorted by name; then those known only from exposure events (status "
        "events_only), sorted by label")


class ExperimentsArea(Area):
    name = "experiment_results"
    path = "/api/v1/experiment-results"
    result = ExperimentResults
    title = "Experiment results"
    sources = ("experimentation",)
    query = {"status": Param(STATUSES, None, description="only experiments with this status (default: all, and the "
                                                         "experiments found only in exposure events)")}

    def __init__(self, context: Context, experimentation: ExperimentationClient | None,
                 events: EventsBackend | None = None, settings: ExperimentMetricsSettings | None = None) -> None:
        super().__init__(context)
        self.experimentation = experimentation
        self.measures: EventMeasures | None = None
        if events is not None and settings is not None:
            self.measures = EventMeasures(context, events, settings)
            self.sources = ("experimentation", "events") if experimentation is not None else ("events",)

    async def compute(self, params: dict[str, Any]) -> ExperimentResults:
        status = params.get("status")
        readings = await self.experimentation.read_experiments(status) if self.experimentation else []
        results = analyse_readings(readings)
        if self.measures is not None:
            # With a status filter the experiments found only in events are left out: their status is unknown.
            results = await self.measures.measured(readings, results, events_only=status is None)
        return ExperimentResults(tuple(results))

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


class EventMeasures:
    """The experiments' metrics on the identified events (docs/experiment-metrics.md)."""

    def __init__(self, context: Context, events: EventsBackend, settings: ExperimentMetricsSettings) -> None:
        self.context = context
        self.events = events
        self.settings = settings

    async def measured(self, readings: Sequence[ExperimentReading], results: Sequence[ExperimentResult], *,
                       events_only: bool) -> list[ExperimentResult]:
        """``results`` (one per reading) with the metrics of those found in exposure events, then,
        with ``events_only``, an entry for each experiment found only there (sorted by its label)."""
        experiments = [reading.experiment for reading in readings]
        try:
            sums = await self.sums(experiment_keys(experiments))
        except SourceError:  # recorded in the events source's health; the read-outs stand
            return [without_event_metrics(result) for result in results]
        # Off the event loop: a fraction of a millisecond per experiment and metric, and there may be many.
        return await asyncio.to_thread(self._analysed, experiments, results, sums, events_only)

    def _analysed(self, experiments: Sequence[Experiment], results: Sequence[ExperimentResult], sums: ExposureSums,
                  events_only: bool) -> list[ExperimentResult]:
        measured = []
        for experiment, result in zip(experiments, results):
            found = sums.experiments.get(experiment.experiment_id)
            if found is None:
                measured.append(result)
                continue
            metrics = analyse_experiment_metrics(self.settings, found, variants=[arm.name for arm in experiment.arms],
                                                 alpha=usable_alpha(experiment.alpha),
                                                 events_not_found=sums.events_not_found)
            measured.append(with_event_metrics(result, metrics, self.settings))
        if events_only:
            known = {experiment.experiment_id for experiment in experiments}
            for key, found in largest_unknown(sums, known):
                metrics = analyse_experiment_metrics(self.settings, found, events_not_found=sums.events_not_found)
                measured.append(events_only_experiment(key, metrics, variant_order(found.users)))
        return measured

    async def sums(self, keys: dict[str, str]) -> ExposureSums:
        """Every experiment's exposures and per-arm sums up to now: one events question, asked afresh
        for every snapshot (its memo key holds the time) and shared by the loads of that second."""
        end = int(self.context.clock()) + 1  # exclusive: an event stamped exactly now counts
        key = ("events", "exposure_sums", end, tuple(sorted(keys.items())))
        cached = await self.context.load(key, "events", lambda: self.events.exposure_sums(
            self.settings, end=end, experiment_keys=keys))
        return cached.value


def largest_unknown(sums: ExposureSums, known: Collection[str]) -> list[tuple[str, ExperimentSums]]:
    """The experiments found only in the events, by label: at most :data:`MAX_EVENTS_ONLY`, those
    with the most exposed users (labels are whatever the events carry: a producer writing user ids
    there must not make the section unbounded)."""
    unknown = [(key, found) for key, found in sums.experiments.items() if key not in known]
    if len(unknown) > MAX_EVENTS_ONLY:
        log.warning("experiment metrics: %d experiments appear only in exposure events; the %d with the most "
                    "exposed users are listed", len(unknown), MAX_EVENTS_ONLY)
        largest = sorted(unknown, key=lambda item: (-sum(item[1].users.values()), item[0]))[:MAX_EVENTS_ONLY]
        unknown = sorted(largest, key=lambda item: item[0])
    return unknown


def experiment_keys(experiments: Sequence[Experiment]) -> dict[str, str]:
    """Exposure events may name an experiment by its name: each name that one experiment alone
    carries maps to that experiment's id (an id is its own key already)."""
    names = Counter(experiment.name for experiment in experiments)
    ids = {experiment.experiment_id for experiment in experiments}
    return {experiment.name: experiment.experiment_id for experiment in experiments
            if names[experiment.name] == 1 and experiment.name not in ids and experiment.name}
