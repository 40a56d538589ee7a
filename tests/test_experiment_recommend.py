"""Each recommendation gate of docs/methods.md#recommendation-gates, exercised through the whole engine."""

from __future__ import annotations

import re

import pytest
from statsmodels.stats import proportion as sm_proportion

from exporter.analysis.experiments import ArmInput, ExperimentInput, analyse_experiments
from tests.tools import published

# The analyses return typed results; these tests read them as the API publishes them.
analyse_experiments = published(analyse_experiments)


ARM_NAMES = ("control", "variant-a", "variant-b", "variant-c")


def analyse(*arms, planned=None, weights=None, alpha=0.05, status="running"):
    """Analyse one experiment given ``(assignments, conversions)`` per arm (control first)."""
    weights = weights if weights is not None else [1.0 / len(arms)] * len(arms)
    experiment = ExperimentInput(
        experiment_id="exp-1",
        name="Checkout copy",
        status=status,
        start_date=None,
        end_date=None,
        arms=tuple(
            ArmInput(name=name, assignments=n, conversions=x, weight=w)
            for name, (n, x), w in zip(ARM_NAMES, arms, weights)
        ),
        alpha=alpha,
        planned_n_per_arm=planned,
    )
    [result] = analyse_experiments([experiment])
    return result


def test_single_variant_is_no_comparison():
    result = analyse((500, 40))
    assert result["recommendation"] == "no_comparison"
    assert "500 users" in result["recommendation_text"]
    assert result["p_value"] is None and result["is_significant"] is False


def test_srm_failure_wins_over_everything():
    result = analyse((9463, 950), (7681, 1100), planned=5000)
    assert result["srm"]["level"] == "fail"
    assert result["recommendation"] == "investigate_srm"
    text = result["recommendation_text"]
    assert "9,463 / 7,681" in text and "8,572 / 8,572" in text and "p < 0.0001" in text
    assert result["winner"] is None


def test_srm_failure_from_an_arm_with_no_users():
    result = analyse((0, 0), (1000, 100))
    assert result["srm"]["level"] == "fail"
    assert result["recommendation"] == "investigate_srm"


def test_empty_control_is_no_data():
    # Unknown weights make SRM not computable, so the empty control reaches rule 2.
    result = analyse((0, 0), (1000, 100), weights=[None, None])
    assert result["srm"]["level"] == "not_computable"
    assert result["recommendation"] == "no_data"
    assert "0 users" in result["recommendation_text"]


def test_all_arms_empty_is_no_data():
    result = analyse((0, 0), (0, 0))
    assert result["recommendation"] == "no_data"
    assert result["sample_progress"] is None


def test_small_arm_is_insufficient_data():
    result = analyse((99, 40), (101, 60))
    assert result["recommendation"] == "insufficient_data"
    assert "99 users" in result["recommendation_text"]


def test_too_few_conversions_everywhere_is_insufficient_data():
    result = analyse((1000, 24), (1000, 3))
    assert result["recommendation"] == "insufficient_data"
    assert "24 conversions" in result["recommendation_text"]


def test_significantly_worse_treatment_is_roll_back():
    result = analyse((1000, 200), (1000, 140), planned=1000)
    assert result["variants"][1]["is_significant"] is True
    assert result["recommendation"] == "roll_back"
    text = result["recommendation_text"]
    assert text.startswith("variant-a is worse than control: -30.0%")
    assert result["winner"] is None


def test_roll_back_takes_precedence_over_a_winner():
    result = analyse((3000, 600), (3000, 450), (3000, 760), planned=3000)
    assert [v["is_significant"] for v in result["variants"][1:]] == [True, True]
    assert result["recommendation"] == "roll_back"
    assert "variant-a" in result["recommendation_text"]


def test_ship_when_planned_size_reached():
    result = analyse((2000, 200), (2000, 250), planned=2000)
    assert result["recommendation"] == "ship"
    assert result["winner"] == "variant-a"
    text = result["recommendation_text"]
    assert "+25.0% (+5.0% to +49.4%)" in text and "p = 0.012" in text


def test_ship_early_on_very_strong_evidence():
    result = analyse((5000, 500), (5000, 700), planned=20_000)
    assert result["variants"][1]["adjusted_p_value"] < 0.001
    assert result["recommendation"] == "ship"


def test_ship_in_sequential_mode_without_planned_size():
    result = analyse((6000, 600), (6000, 760))
    assert result["analysis_mode"] == "sequential"
    assert result["recommendation"] == "ship"


def test_several_winners_ship_the_highest_lower_bound():
    # variant-a: larger point estimate on fewer users (wide interval);
    # variant-b: smaller estimate, tighter interval with the higher lower bound.
    sizes = (20_000, 800, 20_000)
    weights = [n / sum(sizes) for n in sizes]
    result = analyse((20_000, 2000), (800, 112), (20_000, 2500), planned=2500, weights=weights)
    a, b = result["variants"][1], result["variants"][2]
    assert a["is_significant"] and b["is_significant"]
    assert a["relative_lift"] > b["relative_lift"]
    assert b["relative_lift_ci"][0] > a["relative_lift_ci"][0]
    assert result["recommendation"] == "ship" and result["winner"] == "variant-b"


def test_early_signal_in_fixed_design_keeps_running():
    result = analyse((2000, 200), (2000, 250), planned=5000)
    assert result["variants"][1]["is_significant"] is True
    assert result["recommendation"] == "keep_running"
    assert result["winner"] is None
    text = result["recommendation_text"]
    assert "2,000 of the 5,000 planned" in text and "avoid peeking" in text


def test_not_significant_below_required_size_keeps_running_with_remaining_units():
    result = analyse((1000, 100), (1000, 105), planned=20_000)
    assert result["recommendation"] == "keep_running"
    required = result["required_sample_size"]
    assert required == 14751
    assert f"{required - 1000:,} more users per arm" in result["recommendation_text"]
    assert result["sample_progress"] == pytest.approx(1000 / required)


def test_not_significant_past_required_size_is_inconclusive():
    result = analyse((20_000, 2000), (20_000, 2010), planned=20_000)
    assert result["recommendation"] == "inconclusive"
    assert result["sample_progress"] == 1.0
    assert "14,751" in result["recommendation_text"]
    pooled_p = sm_proportion.proportions_ztest([2010, 2000], [20_000, 20_000])[1]
    assert result["variants"][1]["p_value_pooled"] == pytest.approx(pooled_p)


def test_every_text_is_one_sentence_with_numbers():
    cases = [
        analyse((500, 40)),
        analyse((9463, 950), (7681, 1100)),
        analyse((99, 40), (101, 60)),
        analyse((1000, 200), (1000, 140), planned=1000),
        analyse((2000, 200), (2000, 250), planned=2000),
        analyse((2000, 200), (2000, 250), planned=5000),
        analyse((1000, 100), (1000, 105), planned=20_000),
        analyse((20_000, 2000), (20_000, 2010), planned=20_000),
    ]
    for result in cases:
        text = result["recommendation_text"]
        assert re.search(r"\d", text), text
        assert text.endswith(".") and text.count(". ") == 0, text


@pytest.mark.parametrize("arms, planned", [
    (((2000, 200), (2000, 210)), None),  # not significant, below the required size: rule 7
    (((1000, 100), (1000, 140)), 5000),  # significantly better, short of the plan: rule 6
])
def test_a_stopped_experiment_that_would_keep_running_is_inconclusive(arms, planned):
    running = analyse(*arms, planned=planned)
    stopped = analyse(*arms, planned=planned, status="stopped")
    assert running["recommendation"] == "keep_running"
    assert stopped["recommendation"] == "inconclusive"
    assert stopped["recommendation_text"].startswith("Stopped before it could conclude.")
    assert running["recommendation_text"] in stopped["recommendation_text"]
