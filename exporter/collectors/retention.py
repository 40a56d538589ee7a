"""Retention, lifecycle and stickiness metrics (docs/metrics.md#retention-and-lifecycle).

Label values are the fixed intervals, periods 1..8 and lifecycle statuses: a bounded set. The
lifecycle is published for the last complete interval (the one in progress would read as a drop).
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from .base import AreaCollector, helptext

SOURCE = "the identified events"
PERIODS = range(1, 9)  # the retention periods published: weeks 1..8 of the default query
STATUSES = ("new", "returning", "resurrecting", "dormant")


class RetentionCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        rate = GaugeMetricFamily(
            "analytics_retention_rate",
            helptext("Average retention of first-time cohorts of the last 90 days: users back in the period-th "
                     "interval after their cohort's / cohort users (size-weighted over the cohorts that completed "
                     "the period), 0..1.", SOURCE, self.ttl),
            labels=["interval", "period"])
        cohort_rate = GaugeMetricFamily(
            "analytics_retention_cohort_rate",
            helptext("One first-time cohort of the last 90 days (cohort = the date its interval starts): users "
                     "back in the period-th interval after it / its users, 0..1; complete periods only.", SOURCE,
                     self.ttl),
            labels=["interval", "cohort", "period"])
        if not with_samples:
            return [rate, cohort_rate]
        for _, report in self.published():
            for period in PERIODS:
                if period < len(report.average_rates) and report.average_rates[period] is not None:
                    rate.add_metric([report.interval, str(period)], report.average_rates[period])
            for cohort in report.cohorts:
                day = cohort.cohort_start[:10]  # a date: the cohorts of 90 days are a bounded set
                for period, (value, complete) in enumerate(zip(cohort.rates, cohort.complete)):
                    if period and complete and value is not None:
                        cohort_rate.add_metric([report.interval, day, str(period)], value)
        return [family for family in (rate, cohort_rate) if family.samples]


class LifecycleCollector(AreaCollector):

    def _families(self, with_samples: bool) -> list[Metric]:
        users = GaugeMetricFamily(
            "analytics_lifecycle_users",
            helptext("Users by lifecycle status in the last complete interval: new (first-ever event), returning "
                     "(active in it and the one before), resurrecting (back after a gap), dormant (active in the "
                     "one before, not in it).", SOURCE, self.ttl),
            labels=["interval", "status"])
        quick_ratio = GaugeMetricFamily(
            "analytics_lifecycle_quick_ratio",
            helptext("(new + resurrecting) / dormant users in the last complete interval: below 1 the platform "
                     "loses users faster than it gains them.", SOURCE, self.ttl),
            labels=["interval"])
        stickiness = GaugeMetricFamily(
            "analytics_stickiness_ratio",
            helptext("Average daily active users / monthly active users (dau_mau), weekly / monthly (wau_mau), "
                     "over the 28 complete days before today, 0..1.", SOURCE, self.ttl),
            labels=["ratio"])
        families = [users, quick_ratio, stickiness]
        if not with_samples:
            return families
        for _, report in self.published():
            complete = [interval for interval in report.intervals if interval.complete]
            if complete:
                last = complete[-1]
                for status in STATUSES:
                    users.add_metric([report.interval, status], getattr(last, status))
                if last.quick_ratio is not None:
                    quick_ratio.add_metric([report.interval], last.quick_ratio)
            if not stickiness.samples:  # the same 28 days whatever the interval
                for ratio in ("dau_mau", "wau_mau"):
                    if getattr(report.stickiness, ratio) is not None:
                        stickiness.add_metric([ratio], getattr(report.stickiness, ratio))
        return [family for family in families if family.samples]
