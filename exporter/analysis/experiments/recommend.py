"""The decision gates: from one experiment's analysed numbers to a recommendation and a sentence.

Rules are tried in order and the first that matches wins (docs/methods.md#recommendation-gates):

0. a single variant: ``no_comparison``;
1. SRM ``fail``: ``investigate_srm``;
2. control has no users, or no arm has: ``no_data``;
3. an arm under 100 users, or no arm with 25 conversions: ``insufficient_data``;
4. a treatment significantly worse: ``roll_back``;
5. a treatment significantly better, with the planned size reached, sequential mode, or adjusted
   p < 0.001: ``ship`` (several winners: highest lower bound of the relative lift);
6. significantly better but a fixed design short of its planned size: ``keep_running``;
7. nothing significant and below the required size: ``keep_running``;
8. nothing significant at or past the required size: ``inconclusive``.

A **stopped** experiment cannot keep running: where rules 6-7 would say ``keep_running``, it is
``inconclusive``, and the sentence says it was stopped before reaching the size it needed.

Rule 3's "both arms below 25 conversions" is read, for any number of arms, as "every arm below
25 conversions": one arm with enough events already carries signal (e.g. 30 vs 0 conversions).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_ARM_ASSIGNMENTS = 100
MIN_CONVERSIONS = 25
STRONG_EVIDENCE_P = 0.001
"""Adjusted p below which a fixed design may ship before reaching its planned size."""


@dataclass(frozen=True)
class TreatmentOutcome:
    """What the gates need to know about one treatment arm's comparison with control."""

    name: str
    is_significant: bool
    adjusted_p_value: float | None
    absolute_lift: float | None
    absolute_lift_ci: tuple[float, float] | None
    relative_lift: float | None
    relative_lift_ci: tuple[float, float] | None
    chance_to_beat_control: float | None


@dataclass(frozen=True)
class ExperimentOutcome:
    """One experiment's analysed numbers, as the gates read them."""

    control: str
    arm_names: tuple[str, ...]
    assignments: tuple[int, ...]
    conversions: tuple[int, ...]
    treatments: tuple[TreatmentOutcome, ...]
    """Every arm after the control; empty for a single-variant experiment."""
    srm_level: str
    srm_p_value: float | None
    srm_expected: tuple[float | None, ...]
    sequential: bool
    planned_n_per_arm: int | None
    required_sample_size: int | None
    mde_relative: float
    stopped: bool = False


@dataclass(frozen=True)
class Recommendation:
    """The gate that matched (``code``), one sentence with the numbers behind it, and the
    winning variant when the code is ``ship``."""

    code: str
    text: str
    winner: str | None = None


def _count(value: float) -> str:
    return f"{round(value):,}"


def _p(value: float | None) -> str:
    if value is None:
        return "p = n/a"
    return "p < 0.0001" if value < 0.0001 else f"p = {value:.2g}"


def _deciding_p(e: ExperimentOutcome, value: float | None) -> str:
    """The Holm-adjusted p-value that decides, named for what it is in the experiment's mode."""
    return f"adjusted {'always-valid ' if e.sequential else ''}{_p(value)}"


def _probability(value: float) -> str:
    """A probability as a percentage that never rounds up to a misleading 100%."""
    return "> 99.9%" if value > 0.999 else f"{value:.1%}"


def _signed_percent(value: float) -> str:
    return f"{value:+.1%}"


def _lift(outcome: TreatmentOutcome) -> str:
    """Relative lift with its interval, or the absolute lift in points when there is none."""
    if outcome.relative_lift is not None and outcome.relative_lift_ci is not None:
        low, high = (_signed_percent(bound) for bound in outcome.relative_lift_ci)
        return f"{_signed_percent(outcome.relative_lift)} ({low} to {high})"
    points = f"{100 * (outcome.absolute_lift or 0.0):+.2f} points"
    if outcome.absolute_lift_ci is None:
        return points
    low, high = outcome.absolute_lift_ci
    return f"{points} ({100 * low:+.2f} to {100 * high:+.2f} points)"


def _winner_key(outcome: TreatmentOutcome) -> tuple[bool, float]:
    """Rank winners by the lower bound of the relative lift; arms without one come last,
    ranked among themselves by the lower bound of the absolute lift."""
    if outcome.relative_lift_ci is not None:
        return True, outcome.relative_lift_ci[0]
    absolute_low = outcome.absolute_lift_ci[0] if outcome.absolute_lift_ci else 0.0
    return False, absolute_low


def _is_better(outcome: TreatmentOutcome) -> bool:
    return outcome.is_significant and (outcome.absolute_lift or 0.0) > 0


def _is_worse(outcome: TreatmentOutcome) -> bool:
    return outcome.is_significant and (outcome.absolute_lift or 0.0) < 0


def _srm_text(e: ExperimentOutcome) -> str:
    observed = " / ".join(_count(n) for n in e.assignments)
    expected = " / ".join("-" if x is None else _count(x) for x in e.srm_expected)
    return (
        f"Sample ratio mismatch (chi-square {_p(e.srm_p_value)}): observed {observed} users in "
        f"{' / '.join(e.arm_names)} against an expected {expected}, so the results are "
        "untrustworthy until the assignment or logging bug is found."
    )


def _insufficient_text(e: ExperimentOutcome) -> str | None:
    smallest = min(e.assignments)
    most_conversions = max(e.conversions)
    reasons = []
    if smallest < MIN_ARM_ASSIGNMENTS:
        reasons.append(
            f"the smallest arm has {_count(smallest)} users (at least {MIN_ARM_ASSIGNMENTS} needed)"
        )
    if most_conversions < MIN_CONVERSIONS:
        reasons.append(
            f"the best arm has {_count(most_conversions)} conversions "
            f"(at least {MIN_CONVERSIONS} needed in one arm)"
        )
    if not reasons:
        return None
    return "Too little data to judge: " + " and ".join(reasons) + "."


def recommend(e: ExperimentOutcome) -> Recommendation:
    """Apply the ordered gates to one experiment (see module docstring)."""
    decision = _gates(e)
    if e.stopped and decision.code == "keep_running":
        return Recommendation("inconclusive", f"Stopped before it could conclude. {decision.text}")
    return decision


def _gates(e: ExperimentOutcome) -> Recommendation:
    if not e.treatments:
        return Recommendation(
            "no_comparison",
            f"Only one variant ({e.control}, {_count(e.assignments[0])} users): "
            "there is no treatment to compare it with.",
        )
    if e.srm_level == "fail":
        return Recommendation("investigate_srm", _srm_text(e))
    if e.assignments[0] == 0 or not any(e.assignments):
        return Recommendation(
            "no_data",
            f"No data yet: {e.control} has {_count(e.assignments[0])} users and all arms together "
            f"have {_count(sum(e.assignments))}.",
        )
    insufficient = _insufficient_text(e)
    if insufficient:
        return Recommendation("insufficient_data", insufficient)
    return _significant_result(e) or _no_significant_result(e)


def _significant_result(e: ExperimentOutcome) -> Recommendation | None:
    """Rules 4-6: a treatment significantly worse or better than control."""
    losers = [t for t in e.treatments if _is_worse(t)]
    if losers:
        worst = min(losers, key=lambda t: t.adjusted_p_value or 0.0)
        return Recommendation(
            "roll_back",
            f"{worst.name} is worse than {e.control}: {_lift(worst)}, "
            f"{_deciding_p(e, worst.adjusted_p_value)}; roll it back.",
        )
    winners = [t for t in e.treatments if _is_better(t)]
    if not winners:
        return None
    best = max(winners, key=_winner_key)
    smallest = min(e.assignments)
    planned_reached = e.planned_n_per_arm is not None and smallest >= e.planned_n_per_arm
    strong = best.adjusted_p_value is not None and best.adjusted_p_value < STRONG_EVIDENCE_P
    if e.sequential or planned_reached or strong:
        chance = (
            ""
            if best.chance_to_beat_control is None
            else f", chance to beat control {_probability(best.chance_to_beat_control)}"
        )
        return Recommendation(
            "ship",
            f"{best.name} wins: {_lift(best)}, {_deciding_p(e, best.adjusted_p_value)}{chance}; "
            "ship it.",
            winner=best.name,
        )
    return Recommendation(
        "keep_running",
        f"{best.name} leads with {_lift(best)}, {_deciding_p(e, best.adjusted_p_value)}, but only "
        f"{_count(smallest)} of the {_count(e.planned_n_per_arm or 0)} planned users per arm "
        "are in: early signal; avoid peeking and keep running.",
    )


def _no_significant_result(e: ExperimentOutcome) -> Recommendation:
    """Rules 7-8: nothing significant, judged against the required sample size."""
    adjusted = [t.adjusted_p_value for t in e.treatments if t.adjusted_p_value is not None]
    best_p = _deciding_p(e, min(adjusted, default=None))
    smallest = min(e.assignments)
    mde = f"{100 * e.mde_relative:g}% relative change"
    required = e.required_sample_size
    if required is None:
        return Recommendation(
            "keep_running",
            f"No significant difference yet (smallest {best_p}) with {_count(smallest)} "
            f"users in the smallest arm; the size needed to detect a {mde} cannot be computed "
            "from the control's current rate, so keep running.",
        )
    if smallest < required:
        return Recommendation(
            "keep_running",
            f"No significant difference yet (smallest {best_p}); about "
            f"{_count(required - smallest)} more users per arm are needed "
            f"({_count(smallest)} of {_count(required)}) to detect a {mde}.",
        )
    return Recommendation(
        "inconclusive",
        f"No significant difference (smallest {best_p}) with {_count(smallest)} users "
        f"in the smallest arm, past the {_count(required)} needed to detect a {mde}: any effect "
        "is likely smaller than that.",
    )
