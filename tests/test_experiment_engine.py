"""The engine's output: contract shape, defined edge cases, batching, and never NaN or infinity."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from exporter.analysis.experiments import (
    ArmInput,
    ExperimentInput,
    analyse_experiments,
    unavailable_experiment,
)
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
analyse_experiments = published(analyse_experiments)
unavailable_experiment = published(unavailable_experiment)

EXPERIMENT_FIELDS = {
    "experiment_id", "experiment_name", "status", "start_date", "end_date", "control", "alpha",
    "analysis_mode", "multiple_testing", "variants", "srm", "p_value", "is_significant", "winner",
    "required_sample_size", "required_sample_size_formula", "sample_progress", "recommendation",
    "recommendation_text", "status_codes",
}  # fmt: skip
VARIANT_FIELDS = {
    "variant_id", "name", "assignments", "conversions", "conversion_rate",
    "confidence_interval_low", "confidence_interval_high", "absolute_lift", "absolute_lift_ci",
    "relative_lift", "relative_lift_ci", "p_value", "p_value_pooled", "sequential_p_value",
    "adjusted_p_value", "is_significant", "chance_to_beat_control", "expected_loss", "status_codes",
}  # fmt: skip
COMPARISON_FIELDS = VARIANT_FIELDS - {
    "variant_id", "name", "assignments", "conversions", "conversion_rate",
    "confidence_interval_low", "confidence_interval_high", "status_codes",
}  # fmt: skip
PROBABILITY_FIELDS = (
    "conversion_rate", "p_value", "p_value_pooled", "sequential_p_value", "adjusted_p_value",
    "chance_to_beat_control",
)  # fmt: skip
RECOMMENDATIONS = {
    "ship", "roll_back", "keep_running", "inconclusive", "insufficient_data", "investigate_srm",
    "no_data", "no_comparison",
}  # fmt: skip


def experiment(*arms, planned=5000, weights=None, alpha=0.05, experiment_id="exp-1", **extra):
    weights = weights if weights is not None else [1.0 / len(arms)] * len(arms)
    return ExperimentInput(
        experiment_id=experiment_id,
        name="Onboarding",
        status="running",
        start_date=extra.get("start_date"),
        end_date=extra.get("end_date"),
        arms=tuple(
            ArmInput(name="control" if i == 0 else f"v{i}", assignments=n, conversions=x, weight=w)
            for i, ((n, x), w) in enumerate(zip(arms, weights))
        ),
        alpha=alpha,
        planned_n_per_arm=planned,
    )


def analyse_one(*arms, **kwargs):
    [result] = analyse_experiments([experiment(*arms, **kwargs)])
    return result


def test_contract_shape():
    start = datetime(2026, 11, 28, 6, 54, 44, tzinfo=timezone.utc)
    result = analyse_one((500, 140), (500, 175), start_date=start)
    assert set(result) == EXPERIMENT_FIELDS
    assert result["start_date"] == "2026-11-28T06:54:44Z" and result["end_date"] is None
    assert result["control"] == "control" and result["multiple_testing"] == "holm"
    assert result["analysis_mode"] == "fixed"
    assert result["required_sample_size_formula"] == "fleiss_no_cc"
    assert set(result["srm"]) == {"p_value", "level", "expected", "observed"}
    assert result["srm"]["observed"] == {"control": 500, "v1": 500}
    control, treatment = result["variants"]
    assert set(control) == set(treatment) == VARIANT_FIELDS
    assert all(control[field] is None for field in COMPARISON_FIELDS)
    assert all(treatment[field] is not None for field in COMPARISON_FIELDS - {"sequential_p_value"})  # fixed mode
    assert treatment["variant_id"] == treatment["name"] == "v1"
    assert treatment["conversion_rate"] == 0.35
    assert result["p_value"] == treatment["adjusted_p_value"]
    json.dumps(result, allow_nan=False)


def test_dates_are_rendered_in_utc():
    other_zone = timezone(timedelta(hours=2))
    start = datetime(2026, 1, 1, 12, 0, tzinfo=other_zone)
    result = analyse_one((500, 140), (500, 175), start_date=start)
    assert result["start_date"] == "2026-01-01T10:00:00Z"


def test_zero_conversions_in_both_arms():
    control, treatment = analyse_one((1000, 0), (1000, 0))["variants"]
    assert treatment["p_value"] == 1.0 and treatment["adjusted_p_value"] == 1.0
    assert treatment["is_significant"] is False
    assert treatment["relative_lift"] is None and treatment["relative_lift_ci"] is None
    assert treatment["absolute_lift"] == 0.0 and treatment["absolute_lift_ci"] is None
    assert {"zero_variance", "baseline_zero"} <= set(treatment["status_codes"])
    assert control["conversion_rate"] == 0.0


def test_control_rate_zero():
    result = analyse_one((1000, 0), (1000, 30))
    treatment = result["variants"][1]
    assert treatment["relative_lift"] is None and treatment["relative_lift_ci"] is None
    assert "baseline_zero" in treatment["status_codes"]
    assert treatment["absolute_lift"] == pytest.approx(0.03)
    assert result["required_sample_size"] is None
    assert "required_size_unknown" in result["status_codes"]


def test_empty_treatment_arm_keeps_srm():
    result = analyse_one((1000, 100), (0, 0))
    treatment = result["variants"][1]
    assert treatment["conversion_rate"] is None and treatment["confidence_interval_low"] is None
    assert all(treatment[field] is None for field in COMPARISON_FIELDS)
    assert treatment["status_codes"] == ["no_assignments"]
    assert result["srm"]["level"] == "fail" and result["srm"]["p_value"] is not None


def test_relative_interval_unbounded_when_control_near_zero():
    treatment = analyse_one((1000, 1), (1000, 30))["variants"][1]
    assert treatment["relative_lift"] == pytest.approx(29.0)
    assert treatment["relative_lift_ci"] is None
    assert "ratio_ci_unbounded" in treatment["status_codes"]
    assert treatment["absolute_lift_ci"] is not None


@pytest.mark.usefixtures("without_gc_collect")
def test_holm_across_treatments_and_bonferroni_intervals():
    result = analyse_one((4000, 400), (4000, 450), (4000, 480), (4000, 395))
    treatments = result["variants"][1:]
    raw = [v["p_value"] for v in treatments]
    expected = multipletests(raw, method="holm")[1]
    # Published to 12 significant digits.
    assert [v["adjusted_p_value"] for v in treatments] == pytest.approx(list(expected), rel=1e-11)
    assert result["p_value"] == pytest.approx(min(expected))
    for variant in treatments:
        low, high = variant["absolute_lift_ci"]
        if low > 0 or high < 0:  # a simultaneous interval excluding 0 implies Holm significance
            assert variant["is_significant"]


def test_sequential_mode_is_more_conservative_than_fixed():
    fixed = analyse_one((3000, 300), (3000, 360), planned=3000)["variants"][1]
    sequential = analyse_one((3000, 300), (3000, 360), planned=None)["variants"][1]
    # p_value is the fixed-horizon test in both modes; the always-valid one decides in sequential mode.
    assert sequential["p_value"] == fixed["p_value"] and sequential["p_value_pooled"] == fixed["p_value_pooled"]
    assert fixed["sequential_p_value"] is None and fixed["adjusted_p_value"] == fixed["p_value"]
    assert sequential["sequential_p_value"] > sequential["p_value"]
    assert sequential["adjusted_p_value"] == sequential["sequential_p_value"]
    assert sequential["absolute_lift_ci"][0] < fixed["absolute_lift_ci"][0]
    assert sequential["chance_to_beat_control"] == pytest.approx(fixed["chance_to_beat_control"])


def test_a_data_gate_withholds_significance_and_says_so():
    # 90 users per arm: below the 100 the too-little-data gate asks for, however clear the difference.
    result = analyse_one((90, 5), (90, 60), planned=None)
    treatment = result["variants"][1]
    assert result["recommendation"] == "insufficient_data"
    assert treatment["adjusted_p_value"] < 0.001  # the test alone would call it significant
    assert result["is_significant"] is False and treatment["is_significant"] is False
    assert "significance_withheld" in result["status_codes"] and "significance_withheld" in treatment["status_codes"]


@pytest.mark.parametrize("planned, named", [(None, "adjusted always-valid p"), (3000, "adjusted p")])
def test_the_sentence_names_the_p_value_that_decides(planned, named):
    result = analyse_one((3000, 300), (3000, 420), planned=planned)
    assert result["recommendation"] == "ship"
    assert f"{named} " in result["recommendation_text"]
    if planned is not None:
        assert "always-valid" not in result["recommendation_text"]


def test_invalid_input_makes_only_that_experiment_unavailable():
    results = analyse_experiments(
        [
            experiment((100, 150), (100, 10), experiment_id="bad"),
            experiment((2000, 200), (2000, 250), experiment_id="good"),
            experiment((2000, 200), (2000, 250), alpha=1.5, experiment_id="bad-alpha"),
        ]
    )
    assert [r["experiment_id"] for r in results] == ["bad", "good", "bad-alpha"]
    assert results[0]["status_codes"] == ["invalid_counts"]
    assert results[0]["recommendation"] == "no_data"
    assert results[2]["status_codes"] == ["invalid_alpha"]
    assert results[1]["recommendation"] == "keep_running"


def test_unavailable_experiment_shape():
    result = unavailable_experiment(experiment((10, 1), (10, 2), planned=None))
    assert set(result) == EXPERIMENT_FIELDS
    assert result["recommendation"] == "no_data" and result["status_codes"] == ["upstream_error"]
    assert result["srm"]["level"] == "not_computable" and result["srm"]["p_value"] is None
    assert [v["name"] for v in result["variants"]] == ["control", "v1"]
    for variant in result["variants"]:
        assert set(variant) == VARIANT_FIELDS
        assert variant["assignments"] is None and variant["conversion_rate"] is None
    assert result["analysis_mode"] == "sequential"
    json.dumps(result, allow_nan=False)


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(5)
    batch = []
    for i in range(30):
        arms = int(rng.integers(1, 5))
        n = rng.integers(0, 5000, arms)
        x = rng.binomial(n, rng.uniform(0, 0.4))
        planned = None if i % 3 == 0 else int(rng.integers(100, 6000))
        alpha = [0.05, 0.1, 0.01][i % 3]
        batch.append(experiment(*zip(n.tolist(), x.tolist()), planned=planned, alpha=alpha))
    together = analyse_experiments(batch)
    alone = [analyse_experiments([e])[0] for e in batch]
    _assert_same(together, alone)


def _assert_same(actual, expected, path="result"):
    """Equal structures; floats equal up to rounding (the Bayesian series is summed in one
    flat array, so its last bits depend on its neighbours)."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            _assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-10, abs=1e-15), path
    else:
        assert actual == expected, path


counts = st.integers(min_value=0, max_value=3000)


@st.composite
def arm_counts(draw):
    n = draw(counts)
    return n, draw(st.integers(min_value=0, max_value=n))


@st.composite
def experiments(draw, index):
    arms = draw(st.lists(arm_counts(), min_size=1, max_size=4))
    weight = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    weights = draw(st.lists(weight, min_size=len(arms), max_size=len(arms)))
    return experiment(
        *arms,
        weights=weights,
        planned=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=5000))),
        alpha=draw(st.sampled_from([0.001, 0.01, 0.05, 0.1])),
        experiment_id=f"exp-{index}",
    )


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: st.tuples(*[experiments(i) for i in range(k)])))
def test_output_is_always_finite_and_consistent(batch):
    results = analyse_experiments(list(batch))
    json.dumps(results, allow_nan=False)  # raises on NaN or infinity
    for result in results:
        assert set(result) == EXPERIMENT_FIELDS
        assert result["recommendation"] in RECOMMENDATIONS
        assert result["srm"]["level"] in {"ok", "warn", "fail", "not_computable"}
        assert all(math.isfinite(number) for number in _numbers(result))
        for variant in result["variants"]:
            for field in PROBABILITY_FIELDS:
                assert variant[field] is None or 0.0 <= variant[field] <= 1.0
            for field in ("absolute_lift_ci", "relative_lift_ci"):
                if variant[field] is not None:
                    low, high = variant[field]
                    assert low <= high
            if variant["expected_loss"] is not None:
                assert variant["expected_loss"] >= 0.0
            if variant["adjusted_p_value"] is not None:
                deciding = "sequential_p_value" if result["analysis_mode"] == "sequential" else "p_value"
                assert variant["adjusted_p_value"] >= variant[deciding]
        if result["winner"] is not None:
            assert result["recommendation"] == "ship"
