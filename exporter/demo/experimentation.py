"""Simulated Experimentation Service for demo mode (docs/upstreams.md#experimentation-service).

A real aiohttp server speaking the upstream's HTTP contract, oddities included:

- the experiment list is an object (``experiments``, ``total``, ``skip``, ``limit``) in a
  different order on every request, ``status`` is an exact match and ``limit`` has no maximum;
- timestamps are naive ISO strings (UTC) and ids are UUIDs;
- ``/stats`` is the upstream's own analysis (pooled z-test, a t-interval on the mean event
  value, its recommendation sentences), recomputed on every request from per-user assignments
  and metric events;
- when a variant's metric values have zero spread the upstream's interval is NaN, Starlette
  refuses to serialise it, and ``/stats`` answers a plain-text ``500 Internal Server Error``.

The data is a fixed catalogue of demo experiments (a winner, a loser, a run still short of its
planned size, a three-arm test, a sample-ratio mismatch, recently and long-stopped runs, a draft,
a sequential run and one that trips the NaN bug), each simulated from the seeded population's
user ids. Effects are sized for the population's default of a few hundred users: at 300, the
winner, the loser, the mismatch and the short run are unambiguous for any seed, while the
three-arm test has just under 100 users per arm. Running experiments keep enrolling for a day
after ``now`` and conversions keep arriving; the injectable ``clock`` decides how much of that
future is visible, so numbers move while the demo runs.

The FastAPI emulation helpers at the top are shared with the simulated Feedback Service.
"""

from __future__ import annotations

import itertools
import math
import random
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from aiohttp import web
from scipy import special

from .fastapi_emulation import (
    IntQuery,
    fastapi_json_response,
    naive_utc_iso,
    optional_text_query,
    platform_service_middlewares,
    read_int_queries,
    simulated_clock,
    upstream_internal_error,
)

# --------------------------------------------------------------------------------------------
# Demo experiment catalogue
# --------------------------------------------------------------------------------------------

# Running experiments keep enrolling until this long after ``now``; the clock reveals them.
ENROLMENT_HORIZON = timedelta(days=1)
# Converted users fire their metric events within this long after assignment.
CONVERSION_DELAY = timedelta(days=3)


@dataclass(frozen=True)
class VariantPlan:
    """One arm: its configured traffic weight and the behaviour simulated for its users."""

    name: str
    allocation: float
    true_conversion_rate: float
    value_median: float = 3.0
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExperimentPlan:
    """How one demo experiment is configured upstream and how its data is simulated.

    ``planned_size_factor`` sets ``target_sample_size`` relative to the smallest arm observed at
    ``now`` (below 1: reached; above 1: still short); None means no planned size (sequential).
    ``assignment_split`` overrides the configured allocation when users are actually assigned,
    to simulate a sample-ratio mismatch. ``unit_values`` makes every metric event carry the
    default value 1.0, which trips the upstream's NaN-interval bug.
    """

    key: str
    name: str
    description: str
    hypothesis: str
    status: str
    variants: tuple[VariantPlan, ...]
    metrics: tuple[str, ...]
    created_days_ago: float
    started_days_ago: float | None = None
    stopped_days_ago: float | None = None
    planned_size_factor: float | None = 0.8
    significance_level: float = 0.05
    traffic_allocation: float = 1.0
    assignment_split: tuple[float, ...] | None = None
    unit_values: bool = False


def _ab(control_rate: float, treatment: str, treatment_rate: float, config: dict[str, Any],
        value_medians: tuple[float, float] = (3.0, 3.0)) -> tuple[VariantPlan, ...]:
    """A 50/50 control-versus-treatment pair."""
    return (VariantPlan("control", 0.5, control_rate, value_medians[0], {}),
            VariantPlan(treatment, 0.5, treatment_rate, value_medians[1], config))


DEMO_EXPERIMENTS: tuple[ExperimentPlan, ...] = (
    ExperimentPlan(
        key="onboarding-flow", name="New Onboarding Flow", status="running",
        description="Guided tour with a five-step checklist for new developers.",
        hypothesis="A guided first week raises the share of new users who deploy a service.",
        variants=_ab(0.20, "guided-tour", 0.38, {"guided_tour": True, "checklist_steps": 5},
                     (2.4, 2.9)),
        metrics=("first_deployment",), created_days_ago=36, started_days_ago=34),
    ExperimentPlan(
        key="one-click-deploy", name="One-Click Deploy Button", status="running",
        description="Deploy straight from the service page without the confirmation dialog.",
        hypothesis="Removing the confirmation step increases successful deployments.",
        variants=_ab(0.40, "one-click", 0.22, {"confirm_dialog": False}, (4.1, 3.6)),
        metrics=("deployment_succeeded",), created_days_ago=30, started_days_ago=28,
        planned_size_factor=0.9),
    ExperimentPlan(
        key="techdocs-ranking", name="TechDocs Search Ranking", status="running",
        description="Semantic ranking for TechDocs search results.",
        hypothesis="Better ranking makes more searches end on a clicked result.",
        variants=_ab(0.18, "semantic-ranking", 0.195, {"ranker": "semantic-v2"}, (1.8, 1.9)),
        metrics=("search_result_clicked",), created_days_ago=8, started_days_ago=6,
        planned_size_factor=3.0),
    ExperimentPlan(
        key="template-gallery", name="Template Gallery Layout", status="running",
        description="Card grid versus categorised list for the software template gallery.",
        hypothesis="A categorised gallery helps developers find and use a template.",
        variants=(VariantPlan("control", 0.34, 0.22, 5.0, {}),
                  VariantPlan("grid-cards", 0.33, 0.25, 5.2, {"layout": "grid"}),
                  VariantPlan("categorized-list", 0.33, 0.40, 5.6, {"layout": "categories"})),
        metrics=("template_used", "service_created"), created_days_ago=25, started_days_ago=21,
        planned_size_factor=0.9),
    ExperimentPlan(
        key="catalog-autocomplete", name="Service Catalog Search Autocomplete", status="running",
        description="Type-ahead suggestions in the service catalog search box.",
        hypothesis="Autocomplete shortens the path to the right catalog entity.",
        variants=_ab(0.40, "autocomplete", 0.42, {"autocomplete": True}, (2.2, 2.3)),
        metrics=("catalog_entity_opened",), created_days_ago=19, started_days_ago=17,
        planned_size_factor=0.7,
        # A caching bug serves the control page to part of the treatment traffic.
        assignment_split=(0.7, 0.3)),
    ExperimentPlan(
        key="pipeline-badges", name="Pipeline Status Badges", status="stopped",
        description="Build status badges on every catalog entity page.",
        hypothesis="Visible pipeline status makes developers fix red builds sooner.",
        variants=_ab(0.12, "badges", 0.30, {"badges": True}, (6.5, 6.0)),
        metrics=("pipeline_fixed",), created_days_ago=44, started_days_ago=40,
        stopped_days_ago=9, significance_level=0.01),
    ExperimentPlan(
        key="dark-mode-default", name="Dark Mode by Default", status="stopped",
        description="Portal theme defaults to dark for new users.",
        hypothesis="A dark default theme increases weekly portal visits.",
        variants=_ab(0.30, "dark-default", 0.305, {"theme": "dark"}, (3.3, 3.3)),
        metrics=("weekly_return",), created_days_ago=115, started_days_ago=110,
        stopped_days_ago=75, planned_size_factor=0.9),
    ExperimentPlan(
        key="ai-assistant", name="AI Assistant Sidebar", status="draft",
        description="A chat assistant docked in the portal sidebar.",
        hypothesis="An in-portal assistant reduces support tickets.",
        variants=_ab(0.10, "assistant", 0.12, {"assistant_model": "small"}),
        metrics=("question_resolved",), created_days_ago=2, planned_size_factor=1.0),
    ExperimentPlan(
        key="cost-insights", name="Cost Insights Panel", status="running",
        description="Per-service cloud cost panel on the entity page.",
        hypothesis="Showing cost next to the service prompts right-sizing.",
        variants=_ab(0.12, "cost-panel", 0.26, {"cost_panel": True}, (12.0, 11.0)),
        metrics=("rightsizing_applied",), created_days_ago=22, started_days_ago=21,
        planned_size_factor=None),
    ExperimentPlan(
        key="catalog-quick-actions", name="Catalog Quick Actions", status="running",
        description="Quick action menu on catalog rows.",
        hypothesis="Quick actions make common operations one click away.",
        variants=_ab(0.20, "quick-actions", 0.24, {"quick_actions": True}),
        metrics=("conversion",), created_days_ago=16, started_days_ago=15,
        traffic_allocation=0.9,
        # Tracked without a value, so every event stores the default 1.0.
        unit_values=True),
)


# --------------------------------------------------------------------------------------------
# Simulation: per-user assignments and events
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VariantData:
    """What the upstream aggregates for one arm before analysing it."""

    sample_size: int
    conversions: int
    values: np.ndarray


@dataclass(frozen=True)
class SimulatedExperiment:
    """One experiment's upstream record plus the raw rows its ``/stats`` is computed from.

    Assignment rows: ``assigned_user`` (index into the population), ``assigned_variant``
    (index into ``plan.variants``), ``assigned_at`` (epoch seconds). Event rows likewise, plus
    ``event_is_metric`` (the event's name is one of the experiment's metrics) and ``event_value``.
    """

    plan: ExperimentPlan
    id: str
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    target_sample_size: int | None
    assigned_user: np.ndarray
    assigned_variant: np.ndarray
    assigned_at: np.ndarray
    event_user: np.ndarray
    event_variant: np.ndarray
    event_at: np.ndarray
    event_is_metric: np.ndarray
    event_value: np.ndarray

    def as_upstream_json(self) -> dict[str, Any]:
        """The experiment as ``GET /api/v1/experiments/{id}`` returns it."""
        plan = self.plan
        return {
            "id": self.id, "name": plan.name, "description": plan.description,
            "hypothesis": plan.hypothesis, "status": plan.status,
            "variants": [{"name": v.name, "allocation": v.allocation, "config": v.config or {}}
                         for v in plan.variants],
            "metrics": list(plan.metrics), "target_sample_size": self.target_sample_size,
            "significance_level": plan.significance_level,
            "traffic_allocation": plan.traffic_allocation,
            "created_at": naive_utc_iso(self.created_at),
            "started_at": _optional_iso(self.started_at),
            "stopped_at": _optional_iso(self.stopped_at),
        }

    def variant_data(self, at: datetime) -> dict[str, VariantData]:
        """Per-arm sample size, converted users and metric values recorded up to ``at``."""
        cutoff = at.timestamp()
        assigned = self.assigned_at <= cutoff
        counted = (self.event_at <= cutoff) & self.event_is_metric
        data = {}
        for index, variant in enumerate(self.plan.variants):
            arm_events = counted & (self.event_variant == index)
            data[variant.name] = VariantData(
                sample_size=int(np.count_nonzero(assigned & (self.assigned_variant == index))),
                conversions=int(np.unique(self.event_user[arm_events]).size),
                values=self.event_value[arm_events])
        return data


def _optional_iso(moment: datetime | None) -> str | None:
    return None if moment is None else naive_utc_iso(moment)


def _days_before(now: datetime, days: float | None, rng: np.random.Generator) -> datetime | None:
    """``days`` before ``now`` plus a few random hours, so timestamps look like real clicks."""
    if days is None:
        return None
    return now - timedelta(days=days) + timedelta(seconds=float(rng.uniform(0, 6 * 3600)))


def _planned_size(reference: float, factor: float) -> int:
    """``reference * factor`` rounded to two significant digits, away from ``reference``.

    Rounding down when the factor is below 1 (and up otherwise) keeps "planned size reached"
    and "still short" true after rounding. The upstream requires at least 10.
    """
    raw = reference * factor
    if raw < 10:
        return 10
    step = 10 ** (math.floor(math.log10(raw)) - 1)
    rounded = math.floor(raw / step) if factor < 1 else math.ceil(raw / step)
    return int(rounded * step)


def _simulate_experiment(plan: ExperimentPlan, *, seed: int, now: datetime,
                         n_users: int) -> SimulatedExperiment:
    """Assign users, draw conversions and metric events, and fix the upstream record."""
    # One stream per experiment key: adding or reordering experiments changes no other one.
    rng = np.random.default_rng([seed, zlib.crc32(plan.key.encode())])
    experiment_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    started_at = _days_before(now, plan.started_days_ago, rng)
    stopped_at = _days_before(now, plan.stopped_days_ago, rng)
    created_at = _days_before(now, plan.created_days_ago, rng)
    if started_at is not None and created_at > started_at:
        created_at = started_at - timedelta(hours=1)

    n_arms = len(plan.variants)
    if started_at is None:
        users = np.empty(0, dtype=np.int64)
        arms = np.empty(0, dtype=np.int64)
        assigned_at = np.empty(0)
    else:
        enrolment_end = stopped_at or now + ENROLMENT_HORIZON
        users = np.flatnonzero(rng.random(n_users) < plan.traffic_allocation)
        split = plan.assignment_split or tuple(v.allocation for v in plan.variants)
        arms = rng.choice(n_arms, size=users.size, p=np.asarray(split) / sum(split))
        assigned_at = rng.uniform(started_at.timestamp(), enrolment_end.timestamp(), users.size)

    # Exactly round(rate * n) converters per arm, separately among users enrolled by ``now``
    # and later ones: the designed effect shows at ``now`` at any population size instead of
    # drowning in sampling noise when the population is small.
    enrolled_by_now = assigned_at <= now.timestamp()
    converter_groups = [np.empty(0, dtype=np.int64)]
    for arm, variant in enumerate(plan.variants):
        for cohort in (enrolled_by_now, ~enrolled_by_now):
            members = np.flatnonzero((arms == arm) & cohort)
            size = round(variant.true_conversion_rate * members.size)
            converter_groups.append(rng.choice(members, size=size, replace=False))
    converters = np.concatenate(converter_groups)
    events_per_converter = 1 + rng.poisson(0.5, converters.size)
    metric_rows = np.repeat(converters, events_per_converter)
    latest = (stopped_at.timestamp() if stopped_at else (now + ENROLMENT_HORIZON).timestamp())
    room = np.minimum(CONVERSION_DELAY.total_seconds(), latest - assigned_at[metric_rows])
    metric_at = assigned_at[metric_rows] + rng.random(metric_rows.size) * room
    medians = np.array([v.value_median for v in plan.variants])[arms[metric_rows]]
    metric_values = (np.ones(metric_rows.size) if plan.unit_values
                     else np.round(rng.lognormal(np.log(medians), 0.5), 2))

    # Every assigned user also fires a non-metric exposure event (value 1.0) that the upstream
    # stores but must not count; the metric events follow. Owners index ``users`` and ``arms``.
    owners = np.concatenate([np.arange(users.size), metric_rows])
    event_at = np.concatenate([assigned_at, metric_at])
    event_is_metric = np.concatenate([np.zeros(users.size, bool), np.ones(metric_rows.size, bool)])
    event_value = np.concatenate([np.ones(users.size), metric_values])

    if plan.planned_size_factor is None:
        target = None
    else:
        counts_now = np.bincount(arms[enrolled_by_now], minlength=n_arms)
        planned_arm = n_users * plan.traffic_allocation * min(v.allocation for v in plan.variants)
        reference = counts_now.min() if counts_now.any() else planned_arm
        target = _planned_size(reference, plan.planned_size_factor)

    return SimulatedExperiment(
        plan=plan, id=experiment_id, created_at=created_at, started_at=started_at,
        stopped_at=stopped_at, target_sample_size=target,
        assigned_user=users, assigned_variant=arms, assigned_at=assigned_at,
        event_user=users[owners], event_variant=arms[owners], event_at=event_at,
        event_is_metric=event_is_metric, event_value=event_value)


def simulate_experiments(*, seed: int, now: datetime,
                         user_ids: Sequence[str]) -> list[SimulatedExperiment]:
    """The demo catalogue simulated over ``user_ids``; deterministic for (seed, now, len)."""
    return [_simulate_experiment(plan, seed=seed, now=now, n_users=len(user_ids))
            for plan in DEMO_EXPERIMENTS]


# --------------------------------------------------------------------------------------------
# The upstream's own analysis, reproduced (statistical_analysis.py of the platform service)
# --------------------------------------------------------------------------------------------

def _upstream_variant_stats(name: str, data: VariantData) -> dict[str, Any]:
    """Per-arm block of ``/stats``. The interval is on the mean event value, always at 95%."""
    values = data.values
    if values.size == 0:
        mean, std_dev, interval = 0.0, 0.0, (0.0, 0.0)
    else:
        mean = float(np.mean(values))
        std_dev = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        if values.size > 1:
            interval = _t_interval_95(values, mean)
        else:
            interval = (mean, mean)
    return {"variant": name, "sample_size": data.sample_size, "conversions": data.conversions,
            "conversion_rate": data.conversions / data.sample_size if data.sample_size else 0.0,
            "mean_value": mean, "std_dev": std_dev, "confidence_interval": list(interval)}


def _upstream_two_proportion_test(n1: int, x1: int, n2: int, x2: int) -> tuple[float, float]:
    """Pooled z-test, (p-value, relative difference), with the upstream's degenerate cases."""
    if n1 == 0 or n2 == 0:
        return 1.0, 0.0
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0, 0.0
    z = (p2 - p1) / se
    # 1 - cdf, not sf: the upstream's p-value underflows to exactly 0.0 for large |z|.
    return float(2 * (1 - special.ndtr(abs(z)))), ((p2 - p1) / p1 if p1 > 0 else 0.0)


def _t_interval_95(values: np.ndarray, mean: float) -> tuple[float, float]:
    """``scipy.stats.t.interval(0.95, n - 1, loc=mean, scale=sem)`` from ``scipy.special`` (the
    service does not import scipy.stats: ~47 MB). With zero spread scipy answers (nan, nan), since
    a scale of 0 is invalid; that NaN is the upstream's known bug."""
    sem = float(np.std(values, ddof=1)) / math.sqrt(values.size)
    if not sem > 0:
        return math.nan, math.nan
    quantiles = special.stdtrit(values.size - 1, np.array([0.025, 0.975]))
    low, high = quantiles * sem + mean  # scipy's ppf: quantile * scale + loc
    return float(low), float(high)


def _upstream_recommendation(status: str, significant: bool, winner: str | None, control: str,
                             p_value: float, variants: list[dict[str, Any]]) -> str:
    min_sample = min(v["sample_size"] for v in variants)
    if status not in ("running", "stopped"):
        return (f"Experiment is in '{status}' state. "
                "Start the experiment to begin collecting data.")
    if min_sample < 100:
        return ("Continue running. Need more data "
                f"(minimum 100 samples per variant, currently {min_sample}).")
    if not significant:
        if min_sample < 1000:
            return (f"No significant difference yet (p={p_value:.4f}). "
                    "Continue running to reach target sample size.")
        return (f"No significant difference detected (p={p_value:.4f}). "
                f"Consider stopping and keeping {control}.")
    if winner is None:
        return (f"Significant difference found (p={p_value:.4f}) but no clear winner. "
                "Review variant performance and consider additional testing.")
    if variants[0]["conversion_rate"] > 0:
        # The upstream quotes the first treatment's lift whichever arm won.
        lift = variants[1]["conversion_rate"] / variants[0]["conversion_rate"] - 1
        return (f"✅ Winner: {winner} shows {lift:.1%} improvement over {control} "
                f"(p={p_value:.4f}). Recommend rolling out {winner} to 100% traffic.")
    return (f"✅ Winner: {winner} detected (p={p_value:.4f}). "
            f"Recommend rolling out {winner} to 100% traffic.")


def upstream_stats(experiment: SimulatedExperiment, at: datetime) -> dict[str, Any]:
    """``GET /api/v1/experiments/{id}/stats`` as the upstream computes it, from rows up to ``at``.

    May contain NaN (the upstream's bug); the HTTP layer turns that into a plain-text 500.
    """
    plan = experiment.plan
    data = experiment.variant_data(at)
    variants = [_upstream_variant_stats(v.name, data[v.name]) for v in plan.variants]
    control = plan.variants[0].name
    alpha = plan.significance_level

    # The upstream's selection loop: only an arm with a new smallest p-value can set
    # significance, and only if it also beats the control can it become the winner.
    winner, min_p, significant, effect_size = None, 1.0, False, 0.0
    for variant in plan.variants[1:]:
        p_value, effect = _upstream_two_proportion_test(
            data[control].sample_size, data[control].conversions,
            data[variant.name].sample_size, data[variant.name].conversions)
        if p_value < min_p:
            min_p = p_value
            if p_value < alpha:
                significant = True
                if (data[variant.name].conversions / max(data[variant.name].sample_size, 1)
                        > data[control].conversions / max(data[control].sample_size, 1)):
                    winner, effect_size = variant.name, effect

    total_sample = sum(v["sample_size"] for v in variants)
    return {
        "experiment_id": experiment.id, "experiment_name": plan.name, "status": plan.status,
        "variants": variants, "control_variant": control, "winner": winner,
        "statistical_significance": significant, "p_value": min_p,
        "confidence_level": 1.0 - alpha, "effect_size": effect_size,
        "recommendation": _upstream_recommendation(plan.status, significant, winner, control,
                                                   min_p, variants),
        "sample_size_per_variant": total_sample // len(variants),
        "total_conversions": sum(v["conversions"] for v in variants),
    }


# --------------------------------------------------------------------------------------------
# HTTP application
# --------------------------------------------------------------------------------------------

def build_experimentation_app(*, seed: int, now: datetime, user_ids: Sequence[str],
                              clock: Callable[[], float] = time.time,
                              latency_s: float = 0.0) -> web.Application:
    """The simulated Experimentation Service (``/health``, ``/api/v1/experiments...``).

    ``now`` (tz-aware) anchors the catalogue; ``clock`` advances simulated time from it;
    ``latency_s`` delays every response.
    """
    current_time = simulated_clock(now, clock)
    experiments = simulate_experiments(seed=seed, now=now, user_ids=user_ids)
    by_id = {experiment.id: experiment for experiment in experiments}
    request_numbers = itertools.count()

    def find(request: web.Request) -> SimulatedExperiment | None:
        return by_id.get(request.match_info["experiment_id"])

    async def health(request: web.Request) -> web.Response:
        return fastapi_json_response({"status": "healthy", "service": "experimentation"})

    async def list_experiments(request: web.Request) -> web.Response:
        paging = read_int_queries(request, IntQuery("skip", 0), IntQuery("limit", 100))
        skip, limit = paging["skip"], paging["limit"]
        if skip < 0 or limit < 0:
            return upstream_internal_error()  # PostgreSQL rejects a negative OFFSET or LIMIT
        status = optional_text_query(request, "status")
        matching = [e for e in experiments if status is None or e.plan.status == status]
        # No ORDER BY upstream: every request may see another order. Seeded per request so a
        # run of the demo is reproducible.
        random.Random(f"{seed}:{next(request_numbers)}").shuffle(matching)
        return fastapi_json_response({
            "experiments": [e.as_upstream_json() for e in matching[skip:skip + limit]],
            "total": len(matching), "skip": skip, "limit": limit})

    async def get_experiment(request: web.Request) -> web.Response:
        experiment = find(request)
        if experiment is None:
            return fastapi_json_response({"detail": "Experiment not found"}, status=404)
        return fastapi_json_response(experiment.as_upstream_json())

    async def get_stats(request: web.Request) -> web.Response:
        experiment = find(request)
        if experiment is None:
            return fastapi_json_response(
                {"detail": "Experiment not found or insufficient data"}, status=404)
        try:
            return fastapi_json_response(upstream_stats(experiment, current_time()))
        except ValueError:  # NaN interval: Starlette's encoder refuses it, the request dies
            return upstream_internal_error()

    app = web.Application(middlewares=platform_service_middlewares(latency_s))
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/experiments", list_experiments)
    app.router.add_get("/api/v1/experiments/{experiment_id}", get_experiment)
    app.router.add_get("/api/v1/experiments/{experiment_id}/stats", get_stats)
    return app
