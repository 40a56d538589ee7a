"""The demo's planted experiments, through the real service path, get the recommendation planted.

The simulated Experimentation Service (seed and "now" fixed, the population's default 300 users)
-> the experimentation client -> the engine -> ``GET /api/v1/experiment-results``. For each
scenario the test asserts the recommendation and, independently of the engine, the facts of
docs/methods.md#experiments that make it the right one: z-tests, the SRM chi-square, the Fleiss sample
size and the confidence-sequence p-value are recomputed here from the reported counts with scipy
or plain formulas.

Two scenarios do not come out as their names suggest at this population size, and the test
asserts what the rules give instead (both are right by section 1):

* "Template Gallery Layout" (three arms) has under 100 users in an arm: ``insufficient_data``.
* "Dark Mode by Default" (stopped, no effect) is far below the size needed to detect a 10%
  relative change: rule 7 would keep it running, but a stopped experiment cannot run on, so it
  is ``inconclusive`` (stopped before it could conclude).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

import pytest
from scipy import stats

from exporter.demo.experimentation import (
    DEMO_EXPERIMENTS,
    SimulatedExperiment,
    build_experimentation_app,
    simulate_experiments,
)
from tests.conftest import FakeClock

SEED = 42  # the demo runner's default seed
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=timezone.utc)
USERS = [f"u-{number:04d}" for number in range(1, 301)]  # the population's default size
MDE_RELATIVE = 0.10  # docs/methods.md#experiment-inputs: the minimum detectable effect
SEQUENTIAL_TUNING_N = 5000  # total units at which the confidence sequence is tightest


@pytest.fixture
def clock() -> FakeClock:
    """Simulated and service time frozen at ``NOW`` (overrides the conftest clock)."""
    return FakeClock(NOW.timestamp())


@pytest.fixture
async def reported(make_client, aiohttp_server, clock) -> dict[str, tuple[dict, SimulatedExperiment]]:
    """Plan key -> (the experiment object the service reports, the simulated experiment)."""
    upstream = build_experimentation_app(seed=SEED, now=NOW, user_ids=USERS, clock=clock)
    url = str((await aiohttp_server(upstream)).make_url("/"))
    client, _ = await make_client(**{"sources.experimentation.url": url,
                                     "sources.experimentation.max_retries": 1,
                                     "sources.experimentation.timeout_seconds": 2.0})
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 200
    body = await response.json()
    simulated = {s.plan.name: s for s in simulate_experiments(seed=SEED, now=NOW, user_ids=USERS)}
    return {simulated[e["experiment_name"]].plan.key: (e, simulated[e["experiment_name"]])
            for e in body["experiments"]}


# --------------------------------------------------------------------------------------------
# Independent reference computations (docs/methods.md#recommendation-gates)
# --------------------------------------------------------------------------------------------

def counts(experiment: dict) -> list[tuple[int, int]]:
    """(assignments, conversions) per arm, control first."""
    return [(v["assignments"], v["conversions"]) for v in experiment["variants"]]


def unpooled_z(control: tuple[int, int], treatment: tuple[int, int]) -> float:
    (n_c, x_c), (n_t, x_t) = control, treatment
    p_c, p_t = x_c / n_c, x_t / n_t
    return (p_t - p_c) / math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)


def unpooled_p(control: tuple[int, int], treatment: tuple[int, int]) -> float:
    return 2 * stats.norm.sf(abs(unpooled_z(control, treatment)))


def always_valid_p(control: tuple[int, int], treatment: tuple[int, int], alpha: float) -> float:
    """mSPRT / asymptotic confidence-sequence p-value (Waudby-Smith et al.), rho tuned at 5000."""
    units = control[0] + treatment[0]
    rho_squared = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / SEQUENTIAL_TUNING_N
    n_rho2 = units * rho_squared
    z = unpooled_z(control, treatment)
    return min(1.0, math.sqrt(n_rho2 + 1) * math.exp(-z * z * n_rho2 / (2 * (n_rho2 + 1))))


def srm_p(experiment: dict, simulated: SimulatedExperiment) -> float:
    observed = [n for n, _ in counts(experiment)]
    weights = [variant.allocation for variant in simulated.plan.variants]
    expected = [sum(observed) * w / sum(weights) for w in weights]
    return stats.chisquare(observed, expected).pvalue


def fleiss_required(control_rate: float, alpha: float, power: float = 0.8) -> int:
    """Units per arm to detect a 10% relative change (Fleiss, no continuity correction)."""
    p1, p2 = control_rate, control_rate * (1 + MDE_RELATIVE)
    p_bar = (p1 + p2) / 2
    spread = (stats.norm.ppf(1 - alpha / 2) * math.sqrt(2 * p_bar * (1 - p_bar))
              + stats.norm.ppf(power) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return math.ceil(spread**2 / (p2 - p1) ** 2)


def passes_data_gates(arms: Sequence[tuple[int, int]]) -> bool:
    """Rule 3 not triggered: every arm has 100 users and not every arm is under 25 conversions."""
    return min(n for n, _ in arms) >= 100 and max(x for _, x in arms) >= 25


# --------------------------------------------------------------------------------------------
# The scenarios
# --------------------------------------------------------------------------------------------

def test_every_planted_experiment_is_reported(reported):
    assert set(reported) == {plan.key for plan in DEMO_EXPERIMENTS}


@pytest.mark.parametrize("key", ["onboarding-flow", "pipeline-badges"])
def test_clear_winners_ship(reported, key):
    """Rule 5: significantly better at the experiment's alpha with the planned size reached
    (the pipeline badges were stopped 9 days ago, at alpha 0.01)."""
    experiment, simulated = reported[key]
    control, treatment = counts(experiment)
    assert srm_p(experiment, simulated) >= 0.001 and passes_data_gates([control, treatment])
    assert treatment[1] / treatment[0] > control[1] / control[0]
    assert unpooled_p(control, treatment) < simulated.plan.significance_level
    assert min(control[0], treatment[0]) >= simulated.target_sample_size
    assert experiment["analysis_mode"] == "fixed"
    assert (experiment["recommendation"], experiment["winner"]) == (
        "ship", simulated.plan.variants[1].name)


def test_clear_loser_rolls_back(reported):
    """Rule 4: the treatment is significantly worse than control."""
    experiment, simulated = reported["one-click-deploy"]
    control, treatment = counts(experiment)
    assert srm_p(experiment, simulated) >= 0.001 and passes_data_gates([control, treatment])
    assert treatment[1] / treatment[0] < control[1] / control[0]
    assert unpooled_p(control, treatment) < simulated.plan.significance_level
    assert experiment["recommendation"] == "roll_back" and experiment["winner"] is None


def test_sample_ratio_mismatch_is_investigated(reported):
    """Rule 1: assignments against the configured 50/50 give a chi-square p below 0.001."""
    experiment, simulated = reported["catalog-autocomplete"]
    assert srm_p(experiment, simulated) < 0.001
    assert experiment["srm"]["level"] == "fail"
    assert experiment["recommendation"] == "investigate_srm"


def test_the_upstream_500_bug_is_no_data_with_upstream_error(reported):
    experiment, _ = reported["catalog-quick-actions"]
    assert experiment["recommendation"] == "no_data"
    assert experiment["status_codes"] == ["upstream_error"]


def test_draft_without_users_is_no_data(reported):
    """Rule 2 (two variants, so not ``no_comparison``): the control has no users."""
    experiment, simulated = reported["ai-assistant"]
    assert len(simulated.plan.variants) == 2
    assert counts(experiment) == [(0, 0), (0, 0)]
    assert experiment["recommendation"] == "no_data"


def test_running_short_of_its_planned_size_keeps_running(reported):
    """Rule 7: past the data gates, not significant, below the required size."""
    experiment, simulated = reported["techdocs-ranking"]
    control, treatment = counts(experiment)
    alpha = simulated.plan.significance_level
    assert srm_p(experiment, simulated) >= 0.001 and passes_data_gates([control, treatment])
    assert unpooled_p(control, treatment) >= alpha
    assert min(control[0], treatment[0]) < simulated.target_sample_size
    assert min(control[0], treatment[0]) < fleiss_required(control[1] / control[0], alpha)
    assert experiment["recommendation"] == "keep_running"


def test_without_a_planned_size_the_analysis_is_sequential(reported):
    """No planned size: confidence sequences. At ~140 users per arm the always-valid p-value is
    not significant (the fixed-horizon one would be), so rule 7 gives ``keep_running``."""
    experiment, simulated = reported["cost-insights"]
    control, treatment = counts(experiment)
    alpha = simulated.plan.significance_level
    assert simulated.target_sample_size is None and experiment["analysis_mode"] == "sequential"
    assert passes_data_gates([control, treatment])
    variant = experiment["variants"][1]
    assert variant["sequential_p_value"] == pytest.approx(always_valid_p(control, treatment, alpha), rel=1e-9)
    assert variant["p_value"] == pytest.approx(unpooled_p(control, treatment), rel=1e-9)
    assert variant["adjusted_p_value"] == variant["sequential_p_value"]  # one treatment: Holm changes nothing
    assert always_valid_p(control, treatment, alpha) >= alpha > unpooled_p(control, treatment)
    assert "always-valid" in experiment["recommendation_text"]
    assert min(control[0], treatment[0]) < fleiss_required(control[1] / control[0], alpha)
    assert experiment["recommendation"] == "keep_running"


def test_three_arm_test_is_below_the_minimum_arm_size(reported):
    """Planted as a three-arm winner, but at 300 users an arm has fewer than 100: rule 3."""
    experiment, _ = reported["template-gallery"]
    arms = counts(experiment)
    assert len(arms) == 3 and min(n for n, _ in arms) < 100
    assert experiment["recommendation"] == "insufficient_data"


def test_long_stopped_null_effect_is_below_the_required_size(reported):
    """Stopped 75 days ago with no real effect; not significant but far below the size needed
    for a 10% relative change: rule 7 would say keep running, but it is stopped: inconclusive."""
    experiment, simulated = reported["dark-mode-default"]
    control, treatment = counts(experiment)
    alpha = simulated.plan.significance_level
    assert simulated.plan.status == "stopped" and passes_data_gates([control, treatment])
    assert min(control[0], treatment[0]) >= simulated.target_sample_size
    assert unpooled_p(control, treatment) >= alpha
    assert min(control[0], treatment[0]) < fleiss_required(control[1] / control[0], alpha)
    assert experiment["recommendation"] == "inconclusive"
    assert experiment["recommendation_text"].startswith("Stopped before it could conclude.")
