"""Experiment metrics on events: the statistics against independent computations.

References: statsmodels' two-sample z-test and interval with unequal variances (means), a direct
numpy CUPED on the per-user values, statsmodels' Holm; the delta method (ratios, relative lifts)
against the spread of a large simulation. Inputs are per-user values; the sums the statistics
take are formed here with plain numpy sums. Also: bad input, configuration errors naming the key,
the JSON and its schema, and the guardrail.
"""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from exporter.analysis.experiments.event_metrics import (
    GUARDRAIL_CODE,
    CupedSettings,
    ExperimentMetricsSettings,
    ExperimentSums,
    MeasureSums,
    MetricDefinition,
    analyse_experiment_metrics,
    guardrail_recommendation,
    variant_order,
)
from exporter.analysis.experiments.recommend import Recommendation
from exporter.results import json_schema, to_json
from exporter.typed_mapping import MappingError, build

RTOL = 1e-9


def measure_sums(y, x=None) -> MeasureSums:
    y = np.asarray(y, dtype=np.int64)
    x = np.zeros_like(y) if x is None else np.asarray(x, dtype=np.int64)
    return MeasureSums(int(y.sum()), int(x.sum()), int((y * y).sum()), int((x * x).sum()), int((x * y).sum()))


def experiment(metric: str, arms: dict[str, tuple], excluded: int = 0, skipped: int = 0) -> ExperimentSums:
    """One metric's per-user values per variant: ``{variant: (y, x)}`` (x optional)."""
    return ExperimentSums(experiment="exp", users={v: len(values[0]) for v, values in arms.items()},
                          metrics={metric: {v: measure_sums(*values) for v, values in arms.items()}},
                          excluded_multiple_variants=excluded, skipped_without_variant=skipped)


def analyse(metric: MetricDefinition, arms: dict[str, tuple], *, cuped: bool = False, alpha: float = 0.05,
            variants=(), events_not_found=frozenset()):
    settings = ExperimentMetricsSettings(metrics=(metric,), cuped=CupedSettings() if cuped else None)
    result = analyse_experiment_metrics(settings, experiment(metric.name, arms), variants=variants, alpha=alpha,
                                        events_not_found=events_not_found)
    (only,) = result.metrics
    return only


COUNT = MetricDefinition("deploys", "count", event="deploy.done")
CONVERSION = MetricDefinition("activated", "conversion", event="app.activated")
RATIO = MetricDefinition("errors_per_deploy", "ratio", numerator="deploy.failed", denominator="deploy.done")


# --- means: the unpooled z-test, its interval and Holm ----------------------------------------

@pytest.mark.usefixtures("without_gc_collect")
@pytest.mark.parametrize("metric", [COUNT, CONVERSION])
@pytest.mark.parametrize("seed, sizes, alpha", [(1, (400, 380), 0.05), (2, (250, 300, 270), 0.05),
                                                (3, (50, 900, 120, 60), 0.1)])
def test_means_match_statsmodels_unequal_variance_z_test(metric, seed, sizes, alpha):
    rng = np.random.default_rng(seed)
    per_user = {}
    for k, n in enumerate(sizes):
        rate = 1.0 + 0.15 * k
        values = rng.poisson(rate, n) if metric.kind == "count" else rng.binomial(1, min(0.3 + 0.04 * k, 1), n)
        per_user[f"v{k}"] = (values,)
    result = analyse(metric, per_user, alpha=alpha, variants=list(per_user))

    control = per_user["v0"][0]
    treatments = len(sizes) - 1
    p_values = []
    for row, (name, (values,)) in zip(result.variants, per_user.items()):
        assert row.variant_id == name and row.users == len(values)
        assert row.mean == pytest.approx(values.mean(), rel=RTOL)
        assert row.std == pytest.approx(values.std(ddof=1), rel=RTOL)
        if name == "v0":
            assert (row.absolute_lift, row.p_value, row.adjusted_p_value, row.absolute_lift_ci) == (None,) * 4
            continue
        compare = CompareMeans(DescrStatsW(values.astype(float)), DescrStatsW(control.astype(float)))
        _, p_value = compare.ztest_ind(usevar="unequal")
        low, high = compare.zconfint_diff(alpha=alpha / treatments, usevar="unequal")  # Bonferroni
        assert row.absolute_lift == pytest.approx(values.mean() - control.mean(), rel=RTOL)
        assert row.p_value == pytest.approx(p_value, rel=1e-7)
        assert row.absolute_lift_ci == pytest.approx((max(low, -1) if metric.kind == "conversion" else low,
                                                      min(high, 1) if metric.kind == "conversion" else high),
                                                     rel=1e-7)
        assert row.cuped is None and row.status_codes == ()
        p_values.append(p_value)
    holm = multipletests(p_values, method="holm")[1]
    assert [row.adjusted_p_value for row in result.variants[1:]] == pytest.approx(holm, rel=1e-7)


def test_relative_lift_interval_is_the_delta_method():
    rng = np.random.default_rng(5)
    control, treatment = rng.poisson(2.0, 600), rng.poisson(2.3, 700)
    row = analyse(COUNT, {"control": (control,), "b": (treatment,)}).variants[1]
    c, t = control.mean(), treatment.mean()
    v_c, v_t = control.var(ddof=1) / len(control), treatment.var(ddof=1) / len(treatment)
    se = math.sqrt(v_t / c**2 + t**2 * v_c / c**4)
    z = special.ndtri(0.975)
    assert row.relative_lift == pytest.approx(t / c - 1, rel=RTOL)
    assert row.relative_lift_ci == pytest.approx((t / c - 1 - z * se, t / c - 1 + z * se), rel=1e-9)


# --- CUPED: against a direct numpy computation ---------------------------------------------------

@pytest.mark.parametrize("metric", [COUNT, CONVERSION])
def test_cuped_matches_a_direct_numpy_cuped(metric):
    rng = np.random.default_rng(11)
    arms = {}
    for k, n in enumerate((500, 450, 520)):
        habit = rng.gamma(2.0, 1.0, n)  # a per-user propensity behind both periods: X predicts Y
        pre, post = rng.poisson(habit), rng.poisson(habit * (1 + 0.1 * k))
        if metric.kind == "conversion":
            pre, post = (pre > 1).astype(int), (post > 1).astype(int)
        arms[f"v{k}"] = (post, pre)
    result = analyse(metric, arms, cuped=True, variants=list(arms))

    y = np.concatenate([post for post, _ in arms.values()])
    x = np.concatenate([pre for _, pre in arms.values()])
    theta = np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1)
    adjusted = {name: post - theta * (pre - x.mean()) for name, (post, pre) in arms.items()}
    y_adjusted = np.concatenate(list(adjusted.values()))
    reduction = 1 - np.var(y_adjusted, ddof=1) / np.var(y, ddof=1)
    assert reduction > 0.05  # the covariate matters in this data

    p_values = []
    for row in result.variants:
        assert row.cuped.theta == pytest.approx(theta, rel=RTOL)
        assert row.cuped.variance_reduction == pytest.approx(reduction, rel=1e-8)
        if row.variant_id == "v0":
            assert (row.cuped.absolute_lift, row.cuped.absolute_lift_ci, row.cuped.p_value) == (None,) * 3
            continue
        compare = CompareMeans(DescrStatsW(adjusted[row.variant_id]), DescrStatsW(adjusted["v0"]))
        _, p_value = compare.ztest_ind(usevar="unequal")
        low, high = compare.zconfint_diff(alpha=0.05 / 2, usevar="unequal")
        assert row.cuped.absolute_lift == pytest.approx(adjusted[row.variant_id].mean() - adjusted["v0"].mean(),
                                                        rel=RTOL)
        assert row.cuped.p_value == pytest.approx(p_value, rel=1e-7)
        assert row.cuped.absolute_lift_ci == pytest.approx((low, high), rel=1e-7)
        p_values.append(p_value)
    # With CUPED on, the decision test (and so Holm) is the adjusted one.
    holm = multipletests(p_values, method="holm")[1]
    assert [row.adjusted_p_value for row in result.variants[1:]] == pytest.approx(holm, rel=1e-7)
    assert result.variance_reduction == pytest.approx(reduction, rel=1e-8)


def test_a_constant_covariate_leaves_the_test_as_it_was():
    rng = np.random.default_rng(2)
    arms = {"control": (rng.poisson(1.0, 300), np.ones(300)), "b": (rng.poisson(1.2, 300), np.ones(300))}
    metric = analyse(COUNT, arms, cuped=True)
    row = metric.variants[1]
    assert metric.status_codes == ("cuped_constant_covariate",)
    assert (row.cuped.theta, row.cuped.variance_reduction) == (0.0, 0.0)
    assert row.cuped.p_value == pytest.approx(row.p_value, rel=RTOL)
    assert row.cuped.absolute_lift == pytest.approx(row.absolute_lift, rel=RTOL)


# --- the delta method against a simulation -------------------------------------------------------

SIMULATIONS = 2_000
SIMULATED_USERS = 400
SPREAD_TOLERANCE = 0.10  # relative; the variance of 2,000 draws has a relative standard error of ~3%


def simulated_ratio_arm(rng, replicates: int, users: int, failure_rate: float):
    """Per user: deploys ~ 1 + Poisson(3) and failures ~ Binomial(deploys, p_user), p_user spread
    around ``failure_rate`` (so numerator and denominator are correlated and users differ)."""
    deploys = 1 + rng.poisson(3.0, (replicates, users))
    p_user = rng.beta(2.0, 2.0 / failure_rate - 2.0, (replicates, users))
    return rng.binomial(deploys, p_user), deploys


def test_delta_method_variances_match_a_simulations_spread():
    """The SEs the analysis states (read off its intervals) against the spread of the same
    estimates over 2,000 simulated experiments: the ratio difference and both relative lifts."""
    rng = np.random.default_rng(20240607)
    failures_c, deploys_c = simulated_ratio_arm(rng, SIMULATIONS, SIMULATED_USERS, 0.10)
    failures_t, deploys_t = simulated_ratio_arm(rng, SIMULATIONS, SIMULATED_USERS, 0.12)
    counts_c, counts_t = rng.poisson(2.0, (SIMULATIONS, 300)), rng.poisson(2.4, (SIMULATIONS, 300))
    z = special.ndtri(0.975)

    def half_width_squared(interval):
        return ((interval[1] - interval[0]) / (2 * z)) ** 2

    estimates = {"ratio difference": [], "ratio relative": [], "count relative": []}
    stated = {name: [] for name in estimates}
    for r in range(SIMULATIONS):
        ratio = analyse(RATIO, {"control": (failures_c[r], deploys_c[r]), "b": (failures_t[r], deploys_t[r])})
        row = ratio.variants[1]
        assert row.mean == pytest.approx(failures_t[r].sum() / deploys_t[r].sum(), rel=RTOL)
        estimates["ratio difference"].append(row.absolute_lift)
        stated["ratio difference"].append(half_width_squared(row.absolute_lift_ci))
        estimates["ratio relative"].append(row.relative_lift)
        stated["ratio relative"].append(half_width_squared(row.relative_lift_ci))
        count = analyse(COUNT, {"control": (counts_c[r],), "b": (counts_t[r],)}).variants[1]
        estimates["count relative"].append(count.relative_lift)
        stated["count relative"].append(half_width_squared(count.relative_lift_ci))
    for name in estimates:
        spread = np.var(estimates[name], ddof=1)
        assert np.mean(stated[name]) == pytest.approx(spread, rel=SPREAD_TOLERANCE), name


# --- bad input --------------------------------------------------------------------------------------

def test_an_event_that_never_occurs_is_a_status_not_an_error():
    zeros = np.zeros(200, dtype=int)
    metric = analyse(COUNT, {"control": (zeros,), "b": (zeros,)}, cuped=True, events_not_found={"deploy.done"})
    assert metric.status_codes == ("event_not_found", "cuped_constant_covariate")
    row = metric.variants[1]
    assert row.mean == 0 and row.p_value is None and row.absolute_lift_ci is None
    assert row.status_codes == ("zero_variance", "baseline_zero")


def test_a_ratio_whose_denominator_is_always_zero_has_null_lifts():
    zeros = np.zeros(150, dtype=int)
    metric = analyse(RATIO, {"control": (zeros, zeros), "b": (zeros, zeros)}, cuped=True)
    assert metric.status_codes == ("denominator_zero",)
    for row in metric.variants:
        assert (row.mean, row.std, row.absolute_lift, row.relative_lift, row.p_value, row.cuped) == (None,) * 6
        assert "denominator_zero" in row.status_codes
    assert metric.variants[1].status_codes == ("denominator_zero",)


def test_arms_without_users_or_with_one_user_and_a_zero_baseline():
    rng = np.random.default_rng(4)
    metric = analyse(COUNT, {"control": (np.zeros(100, dtype=int),), "b": (rng.poisson(1, 100),), "c": ([3],)},
                     variants=["control", "b", "c", "d"])
    control, b, c, d = metric.variants
    assert b.relative_lift is None and b.p_value is not None and b.status_codes == ("baseline_zero",)
    assert c.std is None and c.p_value is None and c.status_codes == ("too_few_users", "baseline_zero")
    assert d.users == 0 and d.mean is None and d.status_codes == ("no_users",)
    empty_control = analyse(COUNT, {"b": (rng.poisson(1, 100),)}, variants=["control", "b"])
    assert empty_control.variants[1].status_codes == ("control_unavailable",)
    assert empty_control.variants[1].p_value is None


def test_an_experiment_whose_users_were_all_excluded_lists_no_variants():
    settings = ExperimentMetricsSettings(metrics=(COUNT,))
    sums = ExperimentSums("exp", users={}, metrics={"deploys": {}}, excluded_multiple_variants=7,
                          skipped_without_variant=3)
    result = analyse_experiment_metrics(settings, sums)
    assert to_json(result) == {"exposure": {"users": 0, "excluded_multiple_variants": 7, "skipped_without_variant": 3},
                               "metrics": [{"metric": "deploys", "kind": "count", "variants": [],
                                            "status_codes": []}]}


@pytest.mark.parametrize("metric, fragment", [
    ({"name": "m", "kind": "sum", "event": "e"}, ".kind: 'sum' is not one of conversion, count, ratio"),
    ({"name": "m", "kind": "ratio", "numerator": "e"}, ": metric 'm': denominator (kind ratio) must be an event name"),
    ({"name": "m", "kind": "ratio", "denominator": "e"}, ": metric 'm': numerator (kind ratio) must be an event name"),
    ({"name": "m", "kind": "count"}, ": metric 'm': event (kind count) must be an event name"),
    ({"name": "m", "kind": "count", "event": "e", "denominator": "d"}, ": metric 'm': numerator and denominator are "
                                                                       "for kind ratio, not count"),
    ({"name": "m", "kind": "ratio", "event": "e", "numerator": "n", "denominator": "d"}, ": metric 'm': event is for"),
    ({"name": "m", "kind": "count", "event": "e", "window_days": 0}, ": metric 'm': window_days must be a whole"),
    ({"name": "m", "kind": "count", "event": "e", "windw_days": 3}, ".windw_days: unknown key"),
    ({"name": " ", "kind": "count", "event": "e"}, ": a metric needs a non-empty name"),
])
def test_configuration_errors_name_the_key(metric, fragment):
    with pytest.raises(MappingError) as raised:
        build(ExperimentMetricsSettings, {"metrics": [metric]}, "experiment_metrics")
    assert str(raised.value).startswith("experiment_metrics.metrics[0]" + fragment)


def test_configuration_shape_and_defaults():
    parsed = build(ExperimentMetricsSettings, {
        "metrics": [{"name": "activated", "kind": "conversion", "event": "app.activated"},
                    {"name": "errors", "kind": "ratio", "numerator": "deploy.failed", "denominator": "deploy.done",
                     "window_days": 7, "guardrail": True, "higher_is_better": False}],
        "cuped": {"pre_period_days": 28}})
    assert parsed.exposure_event == "experiment.exposure"
    assert parsed.metrics[0].window_seconds == 14 * 86_400 and parsed.cuped.pre_period_seconds == 28 * 86_400
    assert parsed.metric_events == ("app.activated", "deploy.failed", "deploy.done")
    assert build(ExperimentMetricsSettings, {"cuped": None}).cuped is None
    assert build(ExperimentMetricsSettings, {}).cuped == CupedSettings(14)
    with pytest.raises(MappingError, match="'activated' is used more than once"):
        build(ExperimentMetricsSettings, {"metrics": [{"name": "activated", "kind": "count", "event": "a"}] * 2})


def test_variant_order():
    assert variant_order({"b", "a", "zz"}, ["a", "b"]) == ("a", "b", "zz")
    assert variant_order({"treatment", "control", "alt"}) == ("control", "alt", "treatment")
    assert variant_order({"b", "a"}) == ("a", "b")


# --- JSON ----------------------------------------------------------------------------------------

arm_values = st.lists(st.integers(0, 6), min_size=0, max_size=12)


@settings(max_examples=150, deadline=None)
@given(arms=st.lists(st.tuples(arm_values, arm_values), min_size=1, max_size=4),
       kind=st.sampled_from([COUNT, CONVERSION, RATIO]), cuped=st.booleans(),
       alpha=st.floats(0.001, 0.5))
def test_json_is_finite_and_matches_its_schema(arms, kind, cuped, alpha):
    per_user = {}
    for k, (y, x) in enumerate(arms):
        size = min(len(y), len(x))
        y, x = y[:size], x[:size]
        if kind.kind == "conversion":
            y, x = [min(v, 1) for v in y], [min(v, 1) for v in x]
        if size:
            per_user[f"v{k}"] = (y, x)
    settings_ = ExperimentMetricsSettings(metrics=(kind,), cuped=CupedSettings() if cuped else None)
    sums = experiment(kind.name, per_user)
    result = analyse_experiment_metrics(settings_, sums, variants=[f"v{k}" for k in range(len(arms))], alpha=alpha)
    body = to_json(result)
    json.dumps(body, allow_nan=False)
    jsonschema.validate(body, json_schema(type(result)))
    (metric,) = body["metrics"]
    assert [row["variant_id"] for row in metric["variants"]] == [f"v{k}" for k in range(len(arms))]
    for row in metric["variants"]:
        for low_high in (row["absolute_lift_ci"], row["relative_lift_ci"]):
            assert low_high is None or low_high[0] <= low_high[1]
        decision = row["cuped"]["p_value"] if row["cuped"] is not None else row["p_value"]
        assert (row["adjusted_p_value"] is None) == (decision is None)  # Holm adjusts the decision test
        if decision is not None:
            assert decision <= row["adjusted_p_value"] <= 1


# --- the guardrail --------------------------------------------------------------------------------

SHIP = Recommendation("ship", "b wins: +10.0% (+4.0% to +16.0%), adjusted p = 0.001; ship it.", winner="b")


def guarded(definition: MetricDefinition, control, treatment, recommendation=SHIP, alpha=0.05):
    settings_ = ExperimentMetricsSettings(metrics=(definition,), cuped=None)
    metrics = analyse_experiment_metrics(settings_, experiment(definition.name, {"control": control, "b": treatment}),
                                         variants=["control", "b"]).metrics
    return guardrail_recommendation(recommendation, metrics, settings_, alpha=alpha)


ERRORS = MetricDefinition("errors", "count", event="error", guardrail=True, higher_is_better=False)


def test_a_guardrail_significantly_worse_turns_ship_into_investigate():
    rng = np.random.default_rng(8)
    decision = guarded(ERRORS, (rng.poisson(1.0, 2000),), (rng.poisson(1.3, 2000),))
    assert decision.code == GUARDRAIL_CODE == "investigate_guardrail" and decision.winner is None
    assert decision.text.startswith("b wins on the primary metric but is worse on the guardrail metric errors "
                                    "(higher is worse): +")
    assert "adjusted p < 0.0001" in decision.text and decision.text.endswith("investigate before shipping.")


def test_a_guardrail_leaves_ship_alone_when_not_significantly_worse_or_not_a_guardrail():
    rng = np.random.default_rng(9)
    control, fewer_errors = (rng.poisson(1.3, 2000),), (rng.poisson(1.0, 2000),)
    assert guarded(ERRORS, control, fewer_errors) == SHIP  # significantly better, not worse
    same = (rng.poisson(1.0, 2000),), (rng.poisson(1.0, 2000),)
    assert guarded(ERRORS, *same, alpha=1e-6) == SHIP
    plain = MetricDefinition("errors", "count", event="error", higher_is_better=False)
    assert guarded(plain, fewer_errors, control) == SHIP  # worse, but not a guardrail
    retention = MetricDefinition("retained", "conversion", event="app.open", guardrail=True)
    retained, lost = (rng.binomial(1, 0.5, 2000),), (rng.binomial(1, 0.4, 2000),)
    assert guarded(retention, retained, lost).code == GUARDRAIL_CODE  # higher is better: a drop is the harm
    keep = Recommendation("keep_running", "no significant difference yet")
    assert guarded(ERRORS, control, (rng.poisson(2.0, 2000),), recommendation=keep) == keep
