"""The experiment metrics' exposure sums user by user (docs/experiment-metrics.md read literally):
the reference the tests check both backends against, and the baseline bench/ times them against.

Each side gathers the exposures and counts the events its own way (the tests from raw events, the
bench from the log's columns with ``bisect``); what they then sum is this one definition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

from exporter.analysis.experiments.event_metrics import (
    ExperimentMetricsSettings,
    ExperimentSums,
    ExposureSums,
    MeasureSums,
)

# (experiment, user) -> the user's exposures to it: (epoch second, variant or "" when it has none)
Visits = Mapping[tuple[str, Hashable], Sequence[tuple[int, str]]]
# count(user, event name, start, stop): the user's events of that name at [start, stop)
Count = Callable[[Hashable, str, int, int], int]


def per_user_exposure_sums(visits: Visits, count: Count, settings: ExperimentMetricsSettings,
                            events_found: Collection[str]) -> ExposureSums:
    """Each exposed user's measures from their first exposure, summed per experiment, metric and
    variant; ``events_found``: the event names that occur at all."""
    totals: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(dict))
    users: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    excluded: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    pre = settings.cuped.pre_period_seconds if settings.cuped else None
    for (key, user), seen in visits.items():
        users[key]  # every experiment with an exposure is listed, even when nobody is counted
        skipped[key] += sum(1 for _, variant in seen if not variant)
        variants = {variant for _, variant in seen if variant}
        if len(variants) > 1:
            excluded[key] += 1
        if len(variants) != 1:
            continue
        (variant,) = variants
        first = min(second for second, v in seen if v)
        users[key][variant] += 1
        for metric in settings.metrics:
            window = (first, first + metric.window_seconds)
            if metric.kind == "ratio":
                y, x = count(user, metric.numerator, *window), count(user, metric.denominator, *window)
            else:
                y = count(user, metric.event, *window)
                x = count(user, metric.event, first - pre, first) if pre else 0
                if metric.kind == "conversion":
                    y, x = int(y > 0), int(x > 0)
            total = totals[key][metric.name].setdefault(variant, [0] * 5)
            for position, value in enumerate((y, x, y * y, x * x, x * y)):
                total[position] += value
    return ExposureSums(
        experiments={key: ExperimentSums(
            experiment=key, users=dict(sorted(users[key].items())),
            metrics={metric.name: {v: MeasureSums(*totals[key][metric.name][v]) for v in sorted(users[key])}
                     for metric in settings.metrics},
            excluded_multiple_variants=excluded[key], skipped_without_variant=skipped[key])
            for key in sorted(users)},
        events_not_found=frozenset(settings.metric_events) - frozenset(events_found))
