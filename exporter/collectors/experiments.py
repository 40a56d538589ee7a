"""Experiment metrics (docs/metrics.md#experiments) from the experiment-results snapshot.

Label values stay bounded: only experiments that are running, or stopped within the last 30
days, get series. "Within" is measured from when the snapshot was made, so one snapshot always
renders the same way (the rendered bytes are reused until the next refresh).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client.core import GaugeMetricFamily, Metric

from ..analysis.experiments import ExperimentResult
from .base import AreaCollector, helptext

SOURCE = "the Experimentation Service (statistics computed by this service)"
EVENTS_SOURCE = "the identified events' exposures and metric events (statistics computed by this service)"
STOPPED_PUBLISHED_FOR = timedelta(days=30)
DECIDED = ("ship", "roll_back")  # recommendations that act on a significant result
RECOMMENDATIONS = ("ship", "roll_back", "keep_running", "inconclusive", "insufficient_data",
                   "investigate_srm", "no_data", "no_comparison", "investigate_guardrail")

# metric name, field of the variant row, HELP text
PER_VARIANT = (
    ("analytics_experiment_assignments", "assignments", "Users assigned to the variant."),
    ("analytics_experiment_conversions", "conversions",
     "Assigned users with at least one of the experiment's metric events."),
    ("analytics_experiment_conversion_rate", "conversion_rate", "Conversions per assigned user, 0..1."),
    ("analytics_experiment_relative_lift", "relative_lift",
     "Variant conversion rate over the control's, minus 1 (0.1 = +10%); treatments only."),
    ("analytics_experiment_p_value", "adjusted_p_value",
     "The p-value that decides: two-sided, variant against control, Holm-adjusted across the experiment's "
     "treatments and compared with its alpha. In sequential mode (no planned sample size) it is the "
     "always-valid p-value of the confidence sequence, otherwise the fixed-horizon unpooled z-test; "
     "treatments only."),
    ("analytics_experiment_chance_to_beat_control", "chance_to_beat_control",
     "Posterior probability that the variant converts better than the control (Beta(1,1) priors); "
     "treatments only."),
)


class ExperimentsCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        ttl = self.ttl
        active = GaugeMetricFamily("analytics_active_experiments",
                                   helptext("Experiments currently running.", SOURCE, ttl))
        significant = GaugeMetricFamily(
            "analytics_experiments_significant",
            helptext("Published experiments (running or stopped within 30 days) whose recommendation is ship or "
                     "roll_back: a significant result the data gates let stand.", SOURCE, ttl))
        info = GaugeMetricFamily("analytics_experiment_info",
                                 helptext("Always 1; labels name the experiment, its status and control variant.",
                                          SOURCE, ttl),
                                 labels=["experiment_id", "name", "status", "control"])
        recommendation = GaugeMetricFamily(
            "analytics_experiment_recommendation",
            helptext("1 for the experiment's current recommendation, 0 for the others.", SOURCE, ttl),
            labels=["experiment_id", "recommendation"])
        srm = GaugeMetricFamily(
            "analytics_experiment_srm_p_value",
            helptext("Sample-ratio-mismatch chi-square p-value of assignments against the configured "
                     "allocation.", SOURCE, ttl),
            labels=["experiment_id"])
        per_variant = {name: GaugeMetricFamily(name, helptext(text, SOURCE, ttl), labels=["experiment_id", "variant"])
                       for name, _, text in PER_VARIANT}
        measured = MetricFamilies(ttl)
        families = [active, significant, info, recommendation, srm, *per_variant.values(), *measured.families]
        section = self.area.peek({}) if with_samples else None
        if section is None:
            return [] if with_samples else families

        experiments = section.body.experiments
        snapshot_time = datetime.fromtimestamp(section.generated_at, timezone.utc)
        published = [e for e in experiments if is_published(e, snapshot_time)]
        active.add_metric([], sum(e.status == "running" for e in experiments))
        significant.add_metric([], sum(e.recommendation in DECIDED for e in published))
        for experiment in published:
            experiment_id = experiment.experiment_id
            info.add_metric([experiment_id, experiment.experiment_name, experiment.status, experiment.control or ""],
                            1.0)
            for code in RECOMMENDATIONS:
                recommendation.add_metric([experiment_id, code], float(experiment.recommendation == code))
            if experiment.srm.p_value is not None:
                srm.add_metric([experiment_id], experiment.srm.p_value)
            for variant in experiment.variants:
                for name, field, _ in PER_VARIANT:
                    if getattr(variant, field) is not None:
                        per_variant[name].add_metric([experiment_id, variant.name], getattr(variant, field))
            measured.add(experiment)
        return [f for f in families if f.samples]


class MetricFamilies:
    """The experiments' metrics measured on events (docs/experiment-metrics.md#output): treatments
    only, no sample where the number is null. Variants are those the experiment's read-out lists
    (the Experimentation Service's), so a variant label seen only in events never becomes a label."""

    def __init__(self, ttl: float) -> None:
        self.lift = GaugeMetricFamily(
            "analytics_experiment_metric_relative_lift",
            helptext("The variant's metric over the control's, minus 1 (0.1 = +10%); a metric measured per user in "
                     "the window after the first exposure; treatments only.", EVENTS_SOURCE, ttl),
            labels=["experiment_id", "metric", "variant"])
        self.p_value = GaugeMetricFamily(
            "analytics_experiment_metric_p_value",
            helptext("The metric's deciding p-value: two-sided z-test against the control (the CUPED-adjusted test "
                     "when CUPED applies, the delta method for ratios), Holm-adjusted across the treatments; "
                     "treatments only.", EVENTS_SOURCE, ttl),
            labels=["experiment_id", "metric", "variant"])
        self.variance_reduction = GaugeMetricFamily(
            "analytics_experiment_metric_variance_reduction",
            helptext("CUPED's variance reduction of the metric, 1 - var(Y') / var(Y) over the experiment's exposed "
                     "users (0..1).", EVENTS_SOURCE, ttl),
            labels=["experiment_id", "metric"])

    @property
    def families(self) -> list[Metric]:
        return [self.lift, self.p_value, self.variance_reduction]

    def add(self, experiment: ExperimentResult) -> None:
        listed = {variant.variant_id for variant in experiment.variants}
        for metric in experiment.metrics or ():
            labels = [experiment.experiment_id, metric.metric]
            if metric.variance_reduction is not None:
                self.variance_reduction.add_metric(labels, metric.variance_reduction)
            for row in metric.variants[1:]:
                if row.variant_id not in listed:
                    continue
                if row.relative_lift is not None:
                    self.lift.add_metric([*labels, row.variant_id], row.relative_lift)
                if row.adjusted_p_value is not None:
                    self.p_value.add_metric([*labels, row.variant_id], row.adjusted_p_value)


def is_published(experiment: ExperimentResult, now: datetime) -> bool:
    """Running, or stopped within the last 30 days (a stopped one without a stop date is not)."""
    if experiment.status == "running":
        return True
    if experiment.status != "stopped" or experiment.end_date is None:
        return False
    return now - datetime.fromisoformat(experiment.end_date) <= STOPPED_PUBLISHED_FOR
