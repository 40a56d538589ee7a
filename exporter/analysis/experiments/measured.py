"""Experiment results with their metrics measured on the identified events (docs/experiment-metrics.md#output).

An experiment the Experimentation Service lists gains ``exposure`` and ``metrics`` when it appears
in exposure events, and its recommendation passes the guardrail; an experiment found only in the
events gets an entry of its own (status ``events_only``) with no primary read-out. When the events
could not be read, the read-outs are served as they are, each with the status code
``event_metrics_unavailable``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from .event_metrics import ExperimentMetrics, ExperimentMetricsSettings, guardrail_recommendation
from .recommend import Recommendation
from .report import ExperimentResult, unavailable_experiment

EVENTS_ONLY = "events_only"  # the status (and status code) of an experiment known only from its exposures
EVENT_METRICS_UNAVAILABLE = "event_metrics_unavailable"
DEFAULT_ALPHA = 0.05  # docs/experiment-metrics.md#statistics: without an experiment's own (events_only, invalid)


def with_event_metrics(result: ExperimentResult, measured: ExperimentMetrics,
                       settings: ExperimentMetricsSettings) -> ExperimentResult:
    """``result`` with its ``exposure`` and ``metrics``; a ``ship`` that a guardrail metric stops
    becomes ``investigate_guardrail`` (no winner: nothing is to be shipped yet)."""
    current = Recommendation(result.recommendation, result.recommendation_text, result.winner)
    decision = guardrail_recommendation(current, measured.metrics, settings, alpha=usable_alpha(result.alpha))
    return dataclasses.replace(result, exposure=measured.exposure, metrics=measured.metrics,
                               recommendation=decision.code, recommendation_text=decision.text,
                               winner=decision.winner)


def usable_alpha(alpha: float | None) -> float:
    """The experiment's significance level, or 0.05 when it has none that is a probability (its
    read-out then says ``invalid_alpha``): the metrics are measured all the same."""
    return alpha if isinstance(alpha, int | float) and 0.0 < alpha < 1.0 else DEFAULT_ALPHA


def without_event_metrics(result: ExperimentResult) -> ExperimentResult:
    """``result`` as the Experimentation Service's counts give it, saying that its metrics on the
    events could not be computed this time."""
    return dataclasses.replace(result, status_codes=(*result.status_codes, EVENT_METRICS_UNAVAILABLE))


@dataclass(frozen=True)
class _Arm:
    name: str


@dataclass(frozen=True)
class _EventsOnly:
    """The metadata :func:`unavailable_experiment` reads, for an experiment known from its events."""

    experiment_id: str
    name: str
    arms: tuple[_Arm, ...]
    status: str = EVENTS_ONLY
    start_date: None = None
    end_date: None = None
    alpha: float = DEFAULT_ALPHA


def events_only_experiment(key: str, measured: ExperimentMetrics, variants: Sequence[str]) -> ExperimentResult:
    """The entry of an experiment found only in exposure events, under the label the events give it:
    its variants (control first, as the metrics list them) without counts, no recommendation of
    its own, and its metrics. The metrics' tests are fixed-horizon tests, hence ``fixed``."""
    result = unavailable_experiment(_EventsOnly(key, key, tuple(_Arm(name) for name in variants)), EVENTS_ONLY)
    return dataclasses.replace(
        result, analysis_mode="fixed", exposure=measured.exposure, metrics=measured.metrics,
        recommendation_text="Known only from its exposure events: the Experimentation Service does not list it, so "
                            "there are no assignment counts and no recommendation; its metrics are measured on the "
                            "events.")
