"""Experiments measured on events: 1 M exposures and 10 M metric events, 5 metrics, file backend.

**Ours** (target: at least 5 M events/s on one core, end to end): the file backend's path --
the exposure events and their ``experiment`` and ``variant`` property columns read from the log
(``exposures_in_log``), then ``exposure_sums`` (units from the exposures, every metric event paired
with its user's units, window and pre-period counts, per-arm sums) -- and then
``analyse_experiment_metrics`` for every experiment (unpooled z, delta method, CUPED, Holm, the
typed result). The log holds 11 M events: 1 M exposures of 400,000 users
to 4 experiments (a user in one to three of them, about 1% exposed to two variants of one, 0.5%
exposures without a variant) and 10 M events of 5 names spread over 90 days around the exposures.
The metrics: two conversions, two counts and a ratio, 14-day windows, CUPED over 14 days.

**Baseline**: the plain per-user implementation a careful engineer writes first: the exposures
grouped per (experiment, user) in Python dicts, each user's metric event times in sorted Python
lists, and ``bisect`` for every window; the same per-arm sums. It runs on the users with the
lowest tenth of codes (about 1.1 M events); both throughputs are events per second, and the two
are checked to give the same sums on that subset.

The kernel is single-threaded numpy (no BLAS), so wall time is time on one core.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict

import numpy as np

from bench import BenchResult, best_time
from devtools.exposure_reference import per_user_exposure_sums
from exporter.analysis.experiments.event_metrics import (
    EXPERIMENT_PROPERTY,
    VARIANT_PROPERTY,
    CupedSettings,
    ExperimentMetricsSettings,
    ExposureSums,
    MetricDefinition,
    analyse_experiment_metrics,
)
from exporter.events.file_source import exposures_in_log
from exporter.events.log import EventLog
from exporter.events.log_exposures import MISSING, Exposures, exposure_sums

SEED = 20240619
DAY = 86_400
NOW = 1_780_000_000
REPEATS = 3

USERS = 400_000
EXPOSURES = 1_000_000
METRIC_EVENTS = 10_000_000
EXPERIMENTS = ("onboarding-v2", "deploy-wizard", "pricing-page", "search-ranking")
VARIANTS = ("control", "treatment", "alt")
REFERENCE_SHARE = 10  # the baseline runs on one user in ten
TARGET_EVENTS_PER_SECOND = 5e6
SETTINGS = ExperimentMetricsSettings(
    metrics=(MetricDefinition("activated", "conversion", event="app.activated"),
             MetricDefinition("deploys", "count", event="deploy.done"),
             MetricDefinition("services_created", "count", event="service.created"),
             MetricDefinition("failed_per_deploy", "ratio", numerator="deploy.failed", denominator="deploy.done",
                              guardrail=True, higher_is_better=False),
             MetricDefinition("docs_read", "conversion", event="docs.read")),
    cuped=CupedSettings(14))
EVENT_NAMES = (SETTINGS.exposure_event, *SETTINGS.metric_events)


def run() -> list[BenchResult]:
    log, exposures = bench_log()
    if exposure_sums(log, exposures_in_log(log, SETTINGS.exposure_event), SETTINGS, end=NOW) != \
            exposure_sums(log, exposures, SETTINGS, end=NOW):
        raise AssertionError("experiment metrics: the log's property columns and the exposures disagree")
    ours_s = best_time(lambda: _analyse(log), REPEATS)

    subset_log, subset_exposures = _users_below(log, exposures, USERS // REFERENCE_SHARE)
    ours = exposure_sums(subset_log, subset_exposures, SETTINGS, end=NOW)
    started = time.perf_counter()
    reference = reference_exposure_sums(subset_log, subset_exposures, SETTINGS, end=NOW)
    reference_s = time.perf_counter() - started
    if reference != ours:
        raise AssertionError("experiment metrics: the per-user reference and exposure_sums disagree")
    ours_rate, reference_rate = len(log) / ours_s, len(subset_log) / reference_s
    return [BenchResult(
        name=f"experiment metrics: {EXPOSURES / 1e6:g} M exposures + {METRIC_EVENTS / 1e6:g} M events, "
             f"{len(SETTINGS.metrics)} metrics",
        ours=ours_rate / 1e6, baseline=reference_rate / 1e6, unit="M events/s", better="higher",
        target=TARGET_EVENTS_PER_SECOND / 1e6,
        notes=(f"ours: exposures_in_log + exposure_sums + analyse_experiment_metrics on {len(log):,} events of "
               f"{USERS:,} users, "
               f"{len(EXPERIMENTS)} experiments; best of {REPEATS}: {ours_s:.2f} s",
               f"baseline: plain per-user Python (dicts + bisect) on the first {USERS // REFERENCE_SHARE:,} users' "
               f"{len(subset_log):,} events: {reference_s:.2f} s; the same per-arm sums"))]


def _analyse(log: EventLog) -> None:
    sums = exposure_sums(log, exposures_in_log(log, SETTINGS.exposure_event), SETTINGS, end=NOW)
    for experiment in sums.experiments.values():
        analyse_experiment_metrics(SETTINGS, experiment, events_not_found=sums.events_not_found)


def bench_log(seed: int = SEED) -> tuple[EventLog, Exposures]:
    """The log (exposures and metric events, in time order, the exposures' experiment and variant as
    property columns, as the file loader keeps them) and its exposures as kernel columns."""
    rng = np.random.default_rng(seed)
    exposed_user = rng.integers(0, USERS, EXPOSURES)
    experiment = (exposed_user + rng.integers(0, 3, EXPOSURES) * (rng.random(EXPOSURES) < 0.3)) % len(EXPERIMENTS)
    # A user's variant in an experiment is fixed by a hash, except for a few stray exposures.
    variant = (exposed_user * 7 + experiment * 3) % len(VARIANTS)
    stray = rng.random(EXPOSURES) < 0.01
    variant[stray] = rng.integers(0, len(VARIANTS), int(stray.sum()))
    variant[rng.random(EXPOSURES) < 0.005] = MISSING
    exposed_at = NOW - rng.integers(0, 60 * DAY, EXPOSURES)

    # Metric events: users who were exposed are more active; times around now, 90 days back.
    user = np.where(rng.random(METRIC_EVENTS) < 0.8, exposed_user[rng.integers(0, EXPOSURES, METRIC_EVENTS)],
                    rng.integers(0, USERS, METRIC_EVENTS))
    user[:USERS] = np.arange(USERS)  # every user has an event, so the log keeps every user's code
    name = rng.choice(len(EVENT_NAMES) - 1, METRIC_EVENTS, p=[0.05, 0.35, 0.1, 0.05, 0.45]) + 1
    at = NOW - rng.integers(0, 90 * DAY, METRIC_EVENTS)

    absent = np.full(METRIC_EVENTS, MISSING)
    properties = {EXPERIMENT_PROPERTY: (np.concatenate((experiment, absent)), EXPERIMENTS),
                  VARIANT_PROPERTY: (np.concatenate((variant, absent)), VARIANTS)}
    log = EventLog.build(np.concatenate((exposed_user, user)).astype(np.int32),
                         np.concatenate((np.zeros(EXPOSURES, dtype=np.int64), name)).astype(np.int32),
                         np.concatenate((exposed_at, at)), [f"u{k:07d}" for k in range(USERS)], list(EVENT_NAMES),
                         properties)
    order = np.argsort(exposed_at, kind="stable")  # in log order, as the adapter reads them
    exposures = Exposures(users=exposed_user[order].astype(np.int32), times=exposed_at[order],
                          experiments=experiment[order], variants=variant[order], experiment_labels=EXPERIMENTS,
                          variant_labels=VARIANTS)
    return log, exposures


def reference_exposure_sums(log: EventLog, exposures: Exposures, settings: ExperimentMetricsSettings, *,
                            end: int) -> ExposureSums:
    """Exposure sums user by user, with Python dicts, sorted lists and ``bisect``."""
    times: dict[tuple[int, str], list[int]] = defaultdict(list)
    names = set(settings.metric_events)
    occurring = set()
    for user, event, second in zip(log.user_ids.tolist(), log.event_ids.tolist(), log.timestamps.tolist()):
        name = log.event_names[event]
        if second < end and name in names:
            times[user, name].append(second)  # ascending: the log is in time order
            occurring.add(name)

    def count(user: int, name: str, start: int, stop: int) -> int:
        seconds = times.get((user, name), [])
        return bisect_left(seconds, stop) - bisect_left(seconds, start)

    seen: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
    for user, second, experiment, variant in zip(exposures.users.tolist(), exposures.times.tolist(),
                                                 exposures.experiments.tolist(), exposures.variants.tolist()):
        if second < end and experiment != MISSING:
            seen[exposures.experiment_labels[experiment], user].append(
                (second, "" if variant == MISSING else exposures.variant_labels[variant]))
    return per_user_exposure_sums(seen, count, settings, occurring)


def _users_below(log: EventLog, exposures: Exposures, users: int) -> tuple[EventLog, Exposures]:
    """The events and exposures of users with codes below ``users`` (still in time order)."""
    keep = log.user_ids < users
    subset = EventLog(log.user_ids[keep], log.event_ids[keep], log.timestamps[keep], log.user_names[:users],
                      log.event_names)
    kept = exposures.users < users
    return subset, Exposures(exposures.users[kept], exposures.times[kept], exposures.experiments[kept],
                             exposures.variants[kept], exposures.experiment_labels, exposures.variant_labels)
