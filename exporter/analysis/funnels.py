"""Ordered conversion funnels over identified events (docs/methods.md#funnels).

Semantics are those of ClickHouse ``windowFunnel(W)`` with its ``strict_increase`` option, and
of PostHog's ordered funnels:

- Every step-1 event with ``range_start <= t < range_end`` starts an *attempt*.
- From an attempt's step-k event at time ``t_k``, step k+1 is the **earliest** event named for
  step k+1 with ``t_k < t <= t_1 + W`` (the window is inclusive, like ClickHouse's
  ``timestamp <= first_timestamp + window``) and, when the funnel sets a per-step window ``w_k``,
  also ``t - t_k <= w_k``. Timestamps must strictly increase from step to step: events in the
  same second have no reliable order at one-second resolution, and this keeps one event from
  counting for two steps named by the same event. (Plain ``windowFunnel`` also chains events with
  equal timestamps; ``strict_increase`` is its mode that does not.)
- A user's result is the furthest step reached over all of their attempts. Time statistics use
  the timestamps of that attempt; when several attempts reach the same step, the earliest one.

Without per-step windows the greedy earliest choice is optimal: no chain of events reaches
further than the furthest greedy attempt. With per-step windows it is the definition (an
early step-k event is taken even if a later one would have kept step k+1 within ``w_k``).

Report fields: for step k, ``users_entered`` is the number of users who reached step k,
``users_completed`` the number who reached step k+1 (for the last step: equal to
``users_entered``), and ``completion_rate = users_completed / users_entered`` -- the conversion
*from* step k to the next. The last step has no next step: its rate, interval, drop-off and
times are ``null``. ``drop_off_rate`` is ``1 - completion_rate``; the interval is Wilson 95%.
Time statistics are exact over the users who made the transition: mean, true median, and the
90th percentile by linear interpolation between order statistics (numpy's default, Hyndman-Fan
type 7). An undefined number is ``null``, and ``status_codes`` say why: ``no_entries`` (nobody
reached the step / entered the funnel), ``no_transitions`` (nobody went on from this step),
``last_step`` (no next step to time), ``no_completions`` (nobody completed the funnel).

How far each user got is worked out by the events backends: from the log in memory
(:mod:`exporter.events.log_funnels`) or in SQL (:mod:`exporter.events.clickhouse_queries`); both
hand this module a :class:`FunnelProgress`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from exporter.analysis.breakdowns import FILTERS, GROUP_VALUE, Groups, VsRest, breakdown_type, vs_rest
from exporter.analysis.intervals import wilson_interval
from exporter.analysis.numbers import finite_or_none, safe_ratio
from exporter.results import FRACTION, INDEX, SECONDS, USERS, Timestamp, declare, status_codes, with_fields

METHOD = "ordered_events"
P90 = 0.9



@dataclass(frozen=True)
class FunnelStep:
    """One step: its display name and the event that marks it."""

    name: str
    event: str


@dataclass(frozen=True)
class FunnelDefinition:
    """A configured funnel.

    ``window_seconds`` is the conversion window W measured from the step-1 event.
    ``step_windows[k]``, when given and not None, is the most seconds allowed between step k+1 and
    step k+2 (0-based: between ``steps[k]`` and ``steps[k + 1]``), on top of W.
    """

    name: str
    description: str
    steps: tuple[FunnelStep, ...]
    window_seconds: int
    step_windows: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"funnel {self.name!r} has no steps")
        if self.window_seconds <= 0:
            raise ValueError(f"funnel {self.name!r}: window_seconds must be positive")
        if self.step_windows is not None:
            if len(self.step_windows) != len(self.steps) - 1:
                raise ValueError(
                    f"funnel {self.name!r}: step_windows needs one entry per transition "
                    f"({len(self.steps) - 1}), got {len(self.step_windows)}"
                )
            if any(window is not None and window <= 0 for window in self.step_windows):
                raise ValueError(f"funnel {self.name!r}: step windows must be positive")


class FunnelProgress(Protocol):
    """What the ordered-events report needs of a funnel's outcome, whichever backend computed it.

    ``levels``: the furthest step (1..n) of every user who entered, in any order;
    ``transition_seconds(k)``: seconds from step k to k+1 (0-based) of every user who made that
    transition; ``completion_seconds()``: seconds from step 1 to the last of every user who
    completed. :class:`FunnelReach` is one; the ClickHouse events backend returns another.
    """

    @property
    def levels(self) -> np.ndarray: ...

    @property
    def groups(self) -> np.ndarray | None: ...  # with a breakdown: each entrant's value code

    @property
    def values(self) -> tuple[str, ...]: ...  # the breakdown's values, by code

    def transition_seconds(self, step: int) -> np.ndarray: ...

    def completion_seconds(self) -> np.ndarray: ...

    def restricted(self, kept: np.ndarray) -> FunnelProgress:
        """The outcome of the entrants ``kept`` (a boolean per entrant) only."""


def progress_report(funnel: FunnelDefinition, reach: FunnelProgress, *, range_end: int, now: int) -> FunnelReport:
    """The ordered-events report of a funnel's outcome for entries before ``range_end`` (see
    :func:`analyse_funnel` for ``now``)."""
    incomplete_cohort = range_end > now - funnel.window_seconds
    n_steps = len(funnel.steps)
    reached = np.bincount(reach.levels, minlength=n_steps + 1)[::-1].cumsum()[::-1][1:]
    return funnel_report(funnel, reached.tolist(), method=METHOD, incomplete_cohort=incomplete_cohort,
                         step_seconds=reach.transition_seconds, completion_seconds=reach.completion_seconds())


@dataclass(frozen=True)
class StepReport:
    """One funnel step: who reached it, who went on, and how fast."""

    step_name: str = declare("the step", key=True)
    step_number: int = declare("1-based", INDEX)
    users_entered: int = declare("users who reached this step", USERS)
    users_completed: int = declare("users who reached the next step (the last step: users_entered)", USERS)
    completion_rate: float | None = declare("users_completed / users_entered (null for the last step)", FRACTION)
    completion_rate_ci: tuple[float, float] | None = declare("Wilson 95% interval of completion_rate", FRACTION)
    drop_off_rate: float | None = declare("1 - completion_rate", FRACTION)
    avg_time_to_next_step: float | None = declare("mean time to the next step, over users who made it", SECONDS)
    median_time_to_next_step: float | None = declare("median time to the next step", SECONDS)
    p90_time_to_next_step: float | None = declare("90th percentile of the time to the next step", SECONDS)
    status_codes: tuple[str, ...] = status_codes()


@dataclass(frozen=True)
class FunnelReport:
    """A funnel's conversion, step by step."""

    funnel_name: str = declare("the configured funnel")
    description: str = declare("what the funnel measures")
    method: Literal["ordered_events", "aggregate_goals"] = declare(
        "ordered_events (identified events, exact) or aggregate_goals (Plausible goal counts)")
    window_seconds: int = declare("conversion window from the first step", SECONDS)
    steps: tuple[StepReport, ...] = declare("in order")
    overall_conversion_rate: float | None = declare("users who completed / users who entered", FRACTION)
    total_users: int = declare("users who entered (reached step 1)", USERS)
    completed_users: int = declare("users who reached the last step", USERS)
    avg_completion_time: float | None = declare("mean time from step 1 to the last step", SECONDS)
    median_completion_time: float | None = declare("median time from step 1 to the last step", SECONDS)
    incomplete_cohort: bool = declare("entries whose window is still open may yet complete")
    status_codes: tuple[str, ...] = status_codes()
    method_note: str | None = declare("how aggregate_goals counts a step", omit_if_none=True)
    entries_between: tuple[Timestamp, Timestamp] | None = declare(
        "[start, end) of the entries counted (ordered_events)", omit_if_none=True)
    approximation: str | None = declare("how the figures are approximated (status approximated_range)",
                                        omit_if_none=True)


@dataclass(frozen=True)
class FunnelGroup:
    """One value of the breakdown's dimension: its funnel, and its conversion against the rest's."""

    value: str = declare(GROUP_VALUE, key=True)
    users: int = declare("users of the group who entered the funnel", USERS)
    report: FunnelReport = declare("the group's funnel", flatten=True)
    vs_rest: VsRest = declare("the group's overall conversion against every other user's")


FunnelBreakdown = breakdown_type(FunnelGroup)


@dataclass(frozen=True)
class FunnelSection(FunnelReport):
    """A funnel's conversion, step by step, of the users the filters keep; by group with a breakdown."""

    filters: dict[str, tuple[str, ...]] | None = declare(FILTERS, omit_if_none=True)
    breakdown: FunnelBreakdown | None = declare("the funnel per value of a dimension", omit_if_none=True)


def funnel_section(funnel: FunnelDefinition, progress: FunnelProgress, *, range_end: int, now: int,
                   filters: dict[str, tuple[str, ...]] | None, dimension: str | None, groups: Groups | None
                   ) -> FunnelSection:
    """The funnel of every entrant ``progress`` holds and, with ``groups``, of each group's."""
    report = progress_report(funnel, progress, range_end=range_end, now=now)
    breakdown = None
    if groups is not None:
        group_of_entrant = groups.group_of_value(len(progress.values))[progress.groups]
        reports = [progress_report(funnel, progress.restricted(group_of_entrant == index), range_end=range_end,
                                   now=now) for index in range(len(groups.labels))]
        tests = vs_rest([r.total_users for r in reports], [r.completed_users for r in reports])
        breakdown = FunnelBreakdown(dimension, tuple(
            FunnelGroup(label, r.total_users, r, test) for label, r, test in zip(groups.labels, reports, tests)),
            groups.other_values)
    return with_fields(report, FunnelSection, filters=filters, breakdown=breakdown)


def funnel_report(funnel: FunnelDefinition, entered: list[int], *, method: str, incomplete_cohort: bool,
                  step_seconds: Callable[[int], np.ndarray] | None = None,
                  completion_seconds: np.ndarray | None = None, codes: Sequence[str] = ()) -> FunnelReport:
    """The funnel report from the users who reached each step.

    ``step_seconds(k)`` gives the seconds from step k to step k+1 of the users who made that
    transition; without it (aggregate counts) every time is ``null``. ``codes`` are status codes
    that apply to every step and to the funnel (e.g. why timings are missing).
    """
    n_steps = len(funnel.steps)
    completed = entered[1:] + entered[-1:]
    low, high = wilson_interval(np.array(completed), np.array(entered))

    steps = []
    for index, step in enumerate(funnel.steps):
        is_last = index == n_steps - 1
        rate = None if is_last else safe_ratio(completed[index], entered[index])
        summary = _time_summary(None if is_last or step_seconds is None else step_seconds(index))
        step_codes = list(codes)
        if not entered[index]:
            step_codes.append("no_entries")
        if is_last:
            step_codes.append("last_step")
        elif entered[index] and not completed[index]:
            step_codes.append("no_transitions")
        steps.append(StepReport(
            step_name=step.name,
            step_number=index + 1,
            users_entered=entered[index],
            users_completed=completed[index],
            completion_rate=rate,
            completion_rate_ci=None if rate is None else (float(low[index]), float(high[index])),
            drop_off_rate=None if rate is None else 1.0 - rate,
            avg_time_to_next_step=summary["mean"],
            median_time_to_next_step=summary["median"],
            p90_time_to_next_step=summary["p90"],
            status_codes=tuple(step_codes),
        ))

    total, finished = entered[0], entered[-1]
    completion = _time_summary(completion_seconds)
    funnel_codes = list(codes)
    if not total:
        funnel_codes.append("no_entries")
    elif not finished:
        funnel_codes.append("no_completions")
    return FunnelReport(
        funnel_name=funnel.name,
        description=funnel.description,
        method=method,
        window_seconds=funnel.window_seconds,
        steps=tuple(steps),
        overall_conversion_rate=safe_ratio(finished, total),
        total_users=total,
        completed_users=finished,
        avg_completion_time=completion["mean"],
        median_completion_time=completion["median"],
        incomplete_cohort=bool(incomplete_cohort),
        status_codes=tuple(funnel_codes),
    )


def _time_summary(seconds: np.ndarray | None) -> dict[str, float | None]:
    if seconds is None or not len(seconds):
        return {"mean": None, "median": None, "p90": None}
    return {
        "mean": finite_or_none(np.mean(seconds)),
        "median": finite_or_none(np.median(seconds)),
        "p90": finite_or_none(np.quantile(seconds, P90)),
    }
