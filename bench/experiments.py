"""Experiment engine: 1,000 experiments x 3 arms, vectorised engine against a per-experiment loop.

The baseline is what a careful engineer writes first: for each experiment, for each arm, plain
scipy calls (Wilson via ``scipy.stats.norm``, unpooled and pooled z-tests, the Wald interval, the
exact Beta-Binomial sum with ``scipy.special.betaln``, ``scipy.stats.chisquare`` for SRM, Holm
and the Fleiss sample size by hand). It computes a subset of what the engine computes (no
Fieller interval, no expected loss, no recommendation or JSON assembly), so the ratio is, if
anything, flattering to the baseline. Both sides are checked to agree on the numbers they share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from bench import BenchResult, best_time
from exporter.analysis.experiments import ArmInput, ExperimentInput, analyse_experiments

EXPERIMENTS = 1_000
ARMS = 3
TARGET_MS = 100.0
ENGINE_REPEATS = 7
BASELINE_REPEATS = 3
POWER = 0.8


def realistic_experiments(count: int = EXPERIMENTS, arms: int = ARMS,
                          seed: int = 20240601) -> list[ExperimentInput]:
    """``count`` fixed-design experiments: 1k-20k users per arm, control rates 2-30%, treatment
    effects mostly small (relative lift ~ N(0, 10%)), equal configured weights."""
    rng = np.random.default_rng(seed)
    experiments = []
    for number in range(count):
        base_rate = rng.uniform(0.02, 0.30)
        rates = [base_rate] + list(np.clip(base_rate * (1 + rng.normal(0, 0.10, arms - 1)), 0, 1))
        sizes = rng.integers(1_000, 20_001, arms)
        experiments.append(ExperimentInput(
            experiment_id=f"bench-{number:04d}", name=f"Benchmark experiment {number}",
            status="running", start_date=None, end_date=None, planned_n_per_arm=10_000,
            arms=tuple(ArmInput(name=f"arm-{k}", assignments=int(n),
                                conversions=int(rng.binomial(n, rate)), weight=1 / arms)
                       for k, (n, rate) in enumerate(zip(sizes, rates)))))
    return experiments


# --------------------------------------------------------------------------------------------
# The plain baseline: one experiment at a time, one arm at a time
# --------------------------------------------------------------------------------------------

def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    centre = (x + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(x * (n - x) / n + z * z / 4)
    return centre - half, centre + half


def _chance_to_beat(x_t: int, n_t: int, x_c: int, n_c: int) -> float:
    """P(p_t > p_c) with Beta(1, 1) priors, Evan Miller's exact sum over the treatment's
    successes: sum_i B(c+i, b+d) / ((b+i) B(1+i, b) B(c, d))."""
    a, b = x_t + 1, n_t - x_t + 1
    c, d = x_c + 1, n_c - x_c + 1
    i = np.arange(a)
    log_terms = (special.betaln(c + i, b + d) - np.log(b + i)
                 - special.betaln(1 + i, b) - special.betaln(c, d))
    return float(np.exp(log_terms).sum())


def _compare(treatment: ArmInput, control: ArmInput, z_interval: float) -> dict[str, float]:
    p_t, p_c = treatment.conversions / treatment.assignments, control.conversions / control.assignments
    difference = p_t - p_c
    se = math.sqrt(p_t * (1 - p_t) / treatment.assignments + p_c * (1 - p_c) / control.assignments)
    pooled = (treatment.conversions + control.conversions) / (treatment.assignments + control.assignments)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / treatment.assignments + 1 / control.assignments))
    return {
        "p_value": 2 * stats.norm.sf(abs(difference / se)),
        "p_value_pooled": 2 * stats.norm.sf(abs(difference / se_pooled)),
        "absolute_lift_ci": (difference - z_interval * se, difference + z_interval * se),
        "chance_to_beat_control": _chance_to_beat(treatment.conversions, treatment.assignments,
                                                  control.conversions, control.assignments),
    }


def _holm(p_values: Sequence[float]) -> list[float]:
    """Step-down Holm: the k-th smallest p times (m - k), made monotone, capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _fleiss_sample_size(p1: float, mde: float, alpha: float) -> float:
    p2 = p1 * (1 + mde)
    p_bar = (p1 + p2) / 2
    spread = (stats.norm.ppf(1 - alpha / 2) * math.sqrt(2 * p_bar * (1 - p_bar))
              + stats.norm.ppf(POWER) * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return math.ceil(spread**2 / (p2 - p1) ** 2)


def baseline_experiment(experiment: ExperimentInput) -> dict:
    """The plain per-experiment analysis (arms with users; fixed design)."""
    control, treatments = experiment.arms[0], experiment.arms[1:]
    family_alpha = experiment.alpha / len(treatments)
    z_wilson = stats.norm.ppf(0.975)
    z_interval = stats.norm.ppf(1 - family_alpha / 2)
    comparisons = [_compare(t, control, z_interval) for t in treatments]
    for comparison, adjusted in zip(comparisons, _holm([c["p_value"] for c in comparisons])):
        comparison["adjusted_p_value"] = adjusted
    observed = [arm.assignments for arm in experiment.arms]
    weights = [arm.weight for arm in experiment.arms]
    expected = [sum(observed) * w / sum(weights) for w in weights]
    return {
        "wilson": [_wilson(a.conversions, a.assignments, z_wilson) for a in experiment.arms],
        "comparisons": comparisons,
        "srm_p_value": stats.chisquare(observed, expected).pvalue,
        "required_sample_size": _fleiss_sample_size(
            control.conversions / control.assignments, experiment.mde_relative, family_alpha),
    }


def baseline_analysis(experiments: Sequence[ExperimentInput]) -> list[dict]:
    """The straightforward loop the engine is measured against."""
    return [baseline_experiment(experiment) for experiment in experiments]


# --------------------------------------------------------------------------------------------
# Agreement and timing
# --------------------------------------------------------------------------------------------

def _largest_differences(ours: Sequence[dict], theirs: Sequence[dict]) -> dict[str, float]:
    """Largest absolute difference per shared quantity between the engine and the baseline."""
    pairs: dict[str, list[tuple[float, float]]] = {
        "p_value": [], "adjusted_p_value": [], "chance_to_beat_control": [],
        "wilson_low": [], "srm_p_value": [], "required_sample_size": []}
    for engine, plain in zip(ours, theirs):
        pairs["srm_p_value"].append((engine["srm"]["p_value"], plain["srm_p_value"]))
        pairs["required_sample_size"].append(
            (engine["required_sample_size"], plain["required_sample_size"]))
        for row, (low, _) in zip(engine["variants"], plain["wilson"]):
            pairs["wilson_low"].append((row["confidence_interval_low"], low))
        for row, comparison in zip(engine["variants"][1:], plain["comparisons"]):
            for field in ("p_value", "adjusted_p_value", "chance_to_beat_control"):
                pairs[field].append((row[field], comparison[field]))
    return {field: max(abs(a - b) for a, b in values) for field, values in pairs.items()}


def run() -> list[BenchResult]:
    """Time the whole engine analysis and the baseline loop on the same workload."""
    experiments = realistic_experiments()
    differences = _largest_differences(analyse_experiments(experiments),
                                       baseline_analysis(experiments))
    engine_s = best_time(lambda: analyse_experiments(experiments), ENGINE_REPEATS)
    baseline_s = best_time(lambda: baseline_analysis(experiments), BASELINE_REPEATS)
    agreement = ", ".join(f"{field} {value:.1e}" for field, value in differences.items())
    return [BenchResult(
        name=f"experiments: analyse {EXPERIMENTS:,} x {ARMS} arms",
        ours=engine_s * 1e3, baseline=baseline_s * 1e3, unit="ms", target=TARGET_MS,
        notes=(f"best of {ENGINE_REPEATS} (engine, whole analysis incl. recommendations and "
               f"JSON-ready dicts) / {BASELINE_REPEATS} (per-experiment scipy loop) runs",
               f"largest |engine - baseline|: {agreement}"))]
