"""Experiment statistics engine: pure functions over per-arm sufficient statistics.

Entry points: ``analyse_experiments`` (a batch of ``ExperimentInput`` to ``ExperimentResult``)
and ``unavailable_experiment`` (the object for an experiment whose upstream stats failed). The
individual methods live in one module each: ``moments``, ``frequentist``, ``sequential``,
``bayesian``, ``srm``, ``power`` and ``recommend``.
"""

from .analyse import analyse_experiments
from .bayesian import compare_beta_posteriors, probability_greater
from .frequentist import difference_test, fieller_relative_interval, holm_adjust, wald_interval
from .inputs import ArmInput, ExperimentInput
from .moments import arm_moments
from .power import FORMULA_NAME, required_sample_size
from .recommend import recommend
from .report import ExperimentResult, SampleRatio, VariantResult, unavailable_experiment
from .sequential import always_valid_p_value, critical_value, mixing_rho_squared
from .srm import sample_ratio_mismatch

__all__ = [
    "FORMULA_NAME",
    "ArmInput",
    "ExperimentInput",
    "ExperimentResult",
    "SampleRatio",
    "VariantResult",
    "always_valid_p_value",
    "analyse_experiments",
    "arm_moments",
    "compare_beta_posteriors",
    "critical_value",
    "difference_test",
    "fieller_relative_interval",
    "holm_adjust",
    "mixing_rho_squared",
    "probability_greater",
    "recommend",
    "required_sample_size",
    "sample_ratio_mismatch",
    "unavailable_experiment",
    "wald_interval",
]
