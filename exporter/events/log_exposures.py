"""Experiment exposures and metric measures from the in-memory event log: the file backend's kernel.

The definitions are those of ``docs/experiment-metrics.md#who-is-in-the-experiment`` and
``#what-is-measured-per-user``; the statistics are in :mod:`exporter.analysis.experiments.event_metrics`.
This module reduces the events to its :class:`ExposureSums` with numpy, in time linear in the number
of events and without sorting the metric events:

1. **Units.** Exposures are keyed ``experiment * users + user`` and sorted once
   (:func:`sorting_order`); per key, ``reduceat`` gives the first exposure time and the smallest and
   largest variant code. A key whose two differ is a user exposed to several variants: excluded. The
   others are the units: (experiment, variant, user, first exposure ``t0``).
2. **Measures.** For each event name a metric reads, its events are paired with the units of their
   user (a dense ``first unit of user`` table; a user in several experiments adds pairs for the
   others), and ``t - t0`` decides, for each window a metric needs, whether the event counts:
   ``[0, window)`` after the first exposure, ``[-pre_period, 0)`` before it. ``np.bincount`` over
   the units gives every user's count per window.
3. **Sums.** Per metric, the per-user ``y`` and ``x`` are summed per arm with ``np.bincount``
   (float64 sums of integers: exact below 2**53).

The ClickHouse backend computes the same sums in SQL (:mod:`exporter.events.clickhouse_exposures`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from exporter.analysis.experiments.event_metrics import (
    ExperimentMetricsSettings,
    ExperimentSums,
    ExposureSums,
    Measures,
    MeasureSums,
    Window,
)
from exporter.events.log import EventLog

MISSING = -1  # the code of an exposure without the property


@dataclass(frozen=True)
class Exposures:
    """The exposure events as plain columns, one element per exposure event.

    ``users`` are the EventLog's user codes; ``times`` epoch seconds; ``experiments`` and
    ``variants`` codes into ``experiment_labels`` and ``variant_labels``, :data:`MISSING` (-1)
    where the event lacks the property. An empty label counts as missing.
    """

    users: np.ndarray
    times: np.ndarray
    experiments: np.ndarray
    variants: np.ndarray
    experiment_labels: tuple[str, ...]
    variant_labels: tuple[str, ...]

    def __post_init__(self) -> None:
        size = len(self.users)
        if any(len(column) != size for column in (self.times, self.experiments, self.variants)):
            raise ValueError("Exposures columns must have the same length")


def exposure_sums(log: EventLog, exposures: Exposures, settings: ExperimentMetricsSettings, *, end: int,
                  experiment_keys: Mapping[str, str] | None = None) -> ExposureSums:
    """Per experiment: exposure counts and, per metric and variant, the sums of the per-user measures.

    Only exposures and metric events before ``end`` count. ``experiment_keys`` maps an experiment
    label found in events to the key it is reported under (its id, when events carry the name);
    a label without an entry is its own key.
    """
    units = _Units.of(exposures, len(log.user_names), end, experiment_keys or {})
    measures = {metric.name: settings.measures(metric) for metric in settings.metrics}
    windows = {window for m in measures.values() for window in (m.y, m.x) if window is not None}
    counts, not_found = _window_counts(log, units, end, windows)
    sums = {name: _metric_sums(m, counts, units) for name, m in measures.items()}
    experiments = {}
    arms_of_key: dict[int, list[int]] = {}  # in one pass: experiments are as many as the events name
    for arm, k in enumerate(units.arm_key.tolist()):
        arms_of_key.setdefault(k, []).append(arm)
    for k, key in enumerate(units.keys):
        if not units.present[k]:  # its label is known, but its exposures are all after the end
            continue
        variants = {units.variant_labels[units.arm_variant[arm]]: arm for arm in arms_of_key.get(k, ())}
        order = sorted(variants)
        experiments[key] = ExperimentSums(
            experiment=key,
            users={variant: int(units.arm_users[variants[variant]]) for variant in order},
            metrics={name: {variant: per_arm[variants[variant]] for variant in order}
                     for name, per_arm in sums.items()},
            excluded_multiple_variants=int(units.excluded[k]),
            skipped_without_variant=int(units.skipped[k]))
    return ExposureSums(experiments=experiments, events_not_found=not_found)


@dataclass(frozen=True)
class _Units:
    """The counted (experiment, user) pairs and the arms they form.

    ``keys`` are the experiment keys (sorted) and ``present`` says which have an exposure before the
    end; ``excluded`` and ``skipped`` count, per key, users exposed to several variants and exposure
    events without a variant. Per unit: ``user``, ``t0`` (first exposure with a variant) and ``arm``;
    per arm: ``arm_key``, ``arm_variant`` (a code into ``variant_labels``) and ``arm_users``.
    """

    keys: tuple[str, ...]
    present: np.ndarray
    variant_labels: tuple[str, ...]
    excluded: np.ndarray
    skipped: np.ndarray
    user: np.ndarray
    t0: np.ndarray
    arm: np.ndarray
    arm_key: np.ndarray
    arm_variant: np.ndarray
    arm_users: np.ndarray

    @classmethod
    def of(cls, exposures: Exposures, n_users: int, end: int, experiment_keys: Mapping[str, str]) -> _Units:
        key_of_label = [experiment_keys.get(label, label) for label in exposures.experiment_labels]
        keys = sorted({key for key in key_of_label if key})
        key_index = {key: k for k, key in enumerate(keys)}
        # One extra slot at the end of each lookup: code -1 (MISSING) reads it.
        key_code = np.array([key_index.get(key, MISSING) for key in key_of_label] + [MISSING], dtype=np.int64)
        has_variant = np.array([bool(label) for label in exposures.variant_labels] + [False])

        experiment = key_code[exposures.experiments]
        attributed = (exposures.times < end) & (experiment != MISSING)
        with_variant = has_variant[exposures.variants]
        present = np.bincount(experiment[attributed], minlength=len(keys)) > 0
        skipped = np.bincount(experiment[attributed & ~with_variant], minlength=len(keys))
        kept = attributed & with_variant
        experiment, user = experiment[kept], exposures.users[kept].astype(np.int64)
        variant, time = exposures.variants[kept].astype(np.int64), exposures.times[kept]

        pair = experiment * n_users + user
        order = sorting_order(pair)
        pair, variant, time = pair[order], variant[order], time[order]
        first = np.flatnonzero(np.diff(pair, prepend=pair[:1] - 1))  # the start of each pair's exposures
        lowest = np.minimum.reduceat(variant, first)
        single = lowest == np.maximum.reduceat(variant, first)
        pair_key, pair_user = np.divmod(pair[first], max(n_users, 1))
        t0 = np.minimum.reduceat(time, first)
        excluded = np.bincount(pair_key[~single], minlength=len(keys))

        n_variants = len(exposures.variant_labels)
        arm_code = pair_key[single] * n_variants + lowest[single]
        arm_codes, arm, arm_users = _arms(arm_code, len(keys) * n_variants)
        return cls(keys=tuple(keys), present=present, variant_labels=exposures.variant_labels, excluded=excluded,
                   skipped=skipped, user=pair_user[single], t0=t0[single], arm=arm,
                   arm_key=arm_codes // max(n_variants, 1), arm_variant=arm_codes % max(n_variants, 1),
                   arm_users=arm_users)


def _arms(arm_code: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arm codes in use (ascending), each unit's arm (an index into them) and each arm's users.

    A table over every possible code (experiments x variant labels) is the fast way when it is
    small; when the events name many experiments and many variants it could take gigabytes, and
    the codes in use are found by sorting instead."""
    if n_codes > 4 * len(arm_code) + 4096:
        arm_codes, arm, arm_users = np.unique(arm_code, return_inverse=True, return_counts=True)
        return arm_codes, arm.astype(np.int64), arm_users
    arm_users_dense = np.bincount(arm_code, minlength=n_codes)
    arm_codes = np.flatnonzero(arm_users_dense)
    arm_of_code = np.full(len(arm_users_dense), MISSING, dtype=np.int64)
    arm_of_code[arm_codes] = np.arange(len(arm_codes))
    return arm_codes, arm_of_code[arm_code], arm_users_dense[arm_codes]


def sorting_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative int64 keys, faster: when the keys leave
    room, each position is packed into the low bits of its key and the packed values are sorted
    (numpy sorts values several times faster than it argsorts them: 17 ms against 100 ms for 1 M)."""
    position_bits = max(len(keys) - 1, 0).bit_length()
    if not len(keys) or int(keys.max()).bit_length() + position_bits > 62:
        return np.argsort(keys, kind="stable")
    packed = np.sort((keys.astype(np.int64) << position_bits) | np.arange(len(keys), dtype=np.int64))
    return packed & ((1 << position_bits) - 1)


class _UnitsOfUser:
    """Which units each user belongs to: a dense table of every user's first unit (int32, so the
    gather that every event makes stays in cache), and the rest (users in several experiments)
    through the units sorted by user."""

    def __init__(self, unit_user: np.ndarray, n_users: int) -> None:
        self.order = sorting_order(unit_user)
        self.degree = np.bincount(unit_user, minlength=n_users)
        self.start = np.cumsum(self.degree) - self.degree
        first = np.append(self.order, MISSING)[np.where(self.degree > 0, self.start, len(self.order))]
        self.first = first.astype(np.int32)
        self.several = int(self.degree.max(initial=0)) > 1

    def pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(event index, unit)`` for every event of ``users`` and every unit of its user."""
        unit = self.first[users]
        event = np.flatnonzero(unit != MISSING)
        unit = unit[event]
        if not self.several:
            return event, unit
        extra = self.degree[users[event]] - 1
        more = np.flatnonzero(extra > 0)
        repeats = extra[more]
        more_event = np.repeat(event[more], repeats)
        # The k-th extra unit of a user sits at start + k in the by-user order (k = 1 .. degree - 1).
        rank = np.arange(len(more_event)) - np.repeat(np.cumsum(repeats) - repeats, repeats) + 1
        more_unit = self.order[self.start[users[more_event]] + rank]
        return np.concatenate((event, more_event)), np.concatenate((unit, more_unit.astype(np.int32)))


def _window_counts(log: EventLog, units: _Units, end: int, windows: Collection[Window]
                   ) -> tuple[dict[Window, np.ndarray], frozenset[str]]:
    """Per window, every unit's number of events in it; and the names without any event before ``end``.

    Only the events within reach of some unit's first exposure are read: a binary search on the
    time-sorted log bounds them. Offsets from ``t0`` are int32 when that span allows (it does unless
    the exposures themselves span decades), halving the memory traffic of the window tests. One
    event name at a time: its (event, unit) pairs are dropped once its windows are counted.
    """
    end_index = int(np.searchsorted(log.timestamps, end, side="left"))
    begin = stop = base = 0
    small = True
    if len(units.t0) and windows:
        base, last_t0 = int(units.t0.min()), int(units.t0.max())
        reach = (min(window.start for window in windows), max(window.stop for window in windows))
        begin = int(np.searchsorted(log.timestamps, base + reach[0], side="left"))
        stop = max(begin, int(np.searchsorted(log.timestamps, min(end, last_t0 + reach[1]), side="left")))
        small = last_t0 - base + max(-reach[0], reach[1]) < 2**31
    offset_type = np.int32 if small else np.int64
    t0 = (units.t0 - base).astype(offset_type)
    of_user = _UnitsOfUser(units.user, len(log.user_names))
    users, names, seconds = log.user_ids[begin:stop], log.event_ids[begin:stop], log.timestamps[begin:stop]

    by_name: dict[str, list[Window]] = {}
    for window in windows:
        by_name.setdefault(window.event, []).append(window)
    counts, not_found = {}, set()
    for name, its_windows in by_name.items():
        code = log.event_code(name)
        selected = np.flatnonzero(names == code) if code is not None else np.empty(0, dtype=np.int64)
        if not len(selected) and (code is None or not bool(np.any(log.event_ids[:end_index] == code))):
            not_found.add(name)
        event, unit = of_user.pairs(users[selected])
        offset = (seconds[selected[event]] - base).astype(offset_type) - t0[unit]
        for window in its_windows:
            inside = (offset >= window.start) & (offset < window.stop)
            counts[window] = np.bincount(unit[inside], minlength=len(t0))
    return counts, frozenset(not_found)


def _metric_sums(measures: Measures, counts: Mapping[Window, np.ndarray], units: _Units) -> list[MeasureSums]:
    """A metric's sums for every arm (indexed by arm)."""
    y = counts[measures.y]
    x = counts[measures.x] if measures.x is not None else np.zeros_like(y)
    if measures.indicator:
        y, x = (y > 0).astype(np.int64), (x > 0).astype(np.int64)
    arms = len(units.arm_users)

    def per_arm(values: np.ndarray) -> list[int]:
        return np.bincount(units.arm, weights=values, minlength=arms).astype(np.int64).tolist()

    columns = [per_arm(values) for values in (y, x, y * y, x * x, x * y)]
    return [MeasureSums(*column) for column in zip(*columns)]
