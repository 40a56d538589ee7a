"""ClickHouse SQL for experiments measured on events: exposures and per-arm sums, pushed down.

The same answer as the file backend's kernel (:func:`exporter.events.log_exposures.exposure_sums`)
in one query that brings back one row: per (experiment, variant) the users and the sums of the
per-user measures, per experiment the excluded users and the skipped exposures, and which metric
events occur at all. The definitions are those of ``docs/experiment-metrics.md#who-is-in-the-experiment``
and ``#what-is-measured-per-user``.

Built like :mod:`exporter.events.clickhouse_queries` (read its docstring for the safety rules):
configured identifiers (the properties column) are checked and backtick-quoted; every value
(the exposure event, the property keys, metric event names, windows, the end of the snapshot,
experiment labels and keys) is a query parameter.

The steps, as nested subqueries:

1. ``exposures``: the exposure events before the end, with ``properties['experiment']`` (mapped
   to the experiment's key) and ``properties['variant']`` (``''`` when the event lacks it; a Map
   answers ``''`` for a missing key);
2. ``units``: per (experiment, user), the variant-less exposures, the number of distinct variants
   and the first exposure with a variant; ``arm`` is the variant when there is exactly one;
3. per unit, ``countIf`` over the user's metric events for every window a metric needs (the units
   are the right side of a ``RIGHT JOIN``, so the hash table holds the units, not the events,
   and users without metric events keep a row of zeros);
4. per (experiment, arm): users, excluded users, skipped exposures and the metrics' sums, folded
   into arrays (``groupArray``) so that the answer is always exactly one row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from exporter.analysis.experiments.event_metrics import (
    EXPERIMENT_PROPERTY,
    VARIANT_PROPERTY,
    ExperimentMetricsSettings,
    ExperimentSums,
    ExposureSums,
    Measures,
    MeasureSums,
    Window,
)
from exporter.events.clickhouse_queries import (
    EventsTable,
    Parameter,
    Parameters,
    Query,
    Row,
    quote_identifier,
)

DEFAULT_PROPERTIES_COLUMN = "properties"
_SUMS = ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy")


def exposure_sums_query(events: EventsTable, settings: ExperimentMetricsSettings, *, end: int,
                        properties: str = DEFAULT_PROPERTIES_COLUMN,
                        experiment_keys: Mapping[str, str] | None = None) -> Query[ExposureSums]:
    """Exposures and metric sums of every experiment found in exposure events before ``end``.

    ``properties`` is the events table's ``Map(String, String)`` column of event properties;
    ``experiment_keys`` maps an experiment label to the key it is reported under.
    """
    bind = Parameters()
    units = _units(events, bind, settings, end=end, properties=properties, experiment_keys=experiment_keys or {})
    windows: dict[Window, str] = {}  # each window a metric reads -> the column of its per-unit count

    def column(window: Window | None) -> str:
        return "0" if window is None else windows.setdefault(window, f"c{len(windows)}")

    measures = [_measures(settings.measures(metric), column) for metric in settings.metrics]
    names = {name: bind(f"event_{k}", Parameter.string(name)) for k, name in enumerate(settings.metric_events)}
    counted = "".join(
        f", countIf(e.event = {names[window.event]} "
        f"AND e.t >= u.t0 + {bind(f'{name}_start', Parameter.int64(window.start))} "
        f"AND e.t < u.t0 + {bind(f'{name}_stop', Parameter.int64(window.stop))}) AS {name}"
        for window, name in windows.items())
    if windows:
        metric_events = bind("metric_events", Parameter.strings(list(names)))
        per_unit = (f"SELECT u.experiment AS experiment, u.arm AS arm, u.variants AS variants, u.skipped AS skipped"
                    f"{counted} FROM (SELECT user_id, event, t FROM ({events.rows(bind, end=end)}) "
                    f"WHERE has({metric_events}, event)) AS e RIGHT JOIN ({units}) AS u ON e.user_id = u.user_id "
                    "GROUP BY u.experiment, u.user_id, u.arm, u.variants, u.skipped")
        seen = (f"(SELECT groupUniqArray(event) FROM ({events.rows(bind, end=end)}) "
                f"WHERE has({metric_events}, event))")
    else:
        per_unit, seen = f"SELECT experiment, arm, variants, skipped FROM ({units})", "CAST([] AS Array(String))"

    per_metric = "".join(f", {y} AS y{k}, {x} AS x{k}" for k, (y, x) in enumerate(measures))
    sums = {
        "sum_y": [f"sum(y{k})" for k in range(len(measures))],
        "sum_x": [f"sum(x{k})" for k in range(len(measures))],
        "sum_yy": [f"sum(y{k} * y{k})" for k in range(len(measures))],
        "sum_xx": [f"sum(x{k} * x{k})" for k in range(len(measures))],
        "sum_xy": [f"sum(x{k} * y{k})" for k in range(len(measures))],
    }
    arm_sums = "".join(f", CAST([{', '.join(terms)}] AS Array(UInt64)) AS arm_{name}" for name, terms in sums.items())
    per_arm = (f"SELECT experiment, arm, countIf(variants = 1) AS arm_users, countIf(variants > 1) AS arm_excluded, "
               f"sum(skipped) AS arm_skipped{arm_sums} "
               f"FROM (SELECT experiment, arm, variants, skipped{per_metric} FROM ({per_unit})) "
               "GROUP BY experiment, arm")
    folded = ", ".join(f"groupArray({column}) AS {column}s" for column in
                       ("experiment", "arm", "arm_users", "arm_excluded", "arm_skipped", *(f"arm_{s}" for s in _SUMS)))
    sql = f"SELECT {folded}, {seen} AS seen_events FROM ({per_arm})"
    return Query(sql, bind.values, lambda rows: _read(rows, settings))


def _units(events: EventsTable, bind: Parameters, settings: ExperimentMetricsSettings, *, end: int,
           properties: str, experiment_keys: Mapping[str, str]) -> str:
    """Per (experiment, user) with an exposure: ``skipped``, ``variants``, ``t0`` and ``arm``."""
    for name, parameter in events.parameters.items():
        bind(name, parameter)
    column = "src." + quote_identifier(properties)
    experiment = f"{column}[{bind('experiment_property', Parameter.string(EXPERIMENT_PROPERTY))}]"
    variant = f"{column}[{bind('variant_property', Parameter.string(VARIANT_PROPERTY))}]"
    if experiment_keys:
        labels = list(experiment_keys)
        experiment = (f"transform({experiment}, {bind('experiment_labels', Parameter.strings(labels))}, "
                      f"{bind('experiment_keys', Parameter.strings([experiment_keys[label] for label in labels]))}, "
                      f"{experiment})")
    exposures = (
        f"SELECT user_id, experiment, variant, t FROM ("
        f"SELECT {events.user_id} AS user_id, {experiment} AS experiment, {variant} AS variant, "
        f"toInt64(toUnixTimestamp({events.timestamp})) AS t FROM {events.table} AS src "
        f"WHERE {events.timestamp} < toDateTime({bind('events_end', Parameter.int64(end))}) AND {events.condition} "
        f"AND {events.event} = {bind('exposure_event', Parameter.string(settings.exposure_event))}"
        ") WHERE user_id != '' AND experiment != ''")
    return ("SELECT experiment, user_id, skipped, variants, t0, if(variants = 1, first_variant, '') AS arm FROM ("
            "SELECT experiment, user_id, countIf(variant = '') AS skipped, "
            "uniqExactIf(variant, variant != '') AS variants, minIf(t, variant != '') AS t0, "
            f"anyIf(variant, variant != '') AS first_variant FROM ({exposures}) GROUP BY experiment, user_id)")


def _measures(measures: Measures, column: Callable[[Window | None], str]) -> tuple[str, str]:
    """SQL of a metric's per-unit ``y`` and ``x`` over the columns of its windows' counts."""
    y, x = column(measures.y), column(measures.x)
    if measures.indicator:
        return f"toUInt64({y} > 0)", f"toUInt64({x} > 0)"
    return y, x


def _read(rows: list[Row], settings: ExperimentMetricsSettings) -> ExposureSums:
    (row,) = rows
    names = [metric.name for metric in settings.metrics]
    found: dict[str, dict] = {}
    columns = (row[f"{column}s"] for column in
               ("experiment", "arm", "arm_users", "arm_excluded", "arm_skipped", *(f"arm_{s}" for s in _SUMS)))
    for key, arm, users, excluded, skipped, *sums in zip(*columns, strict=True):
        entry = found.setdefault(str(key), {"users": {}, "metrics": {name: {} for name in names},
                                            "excluded": 0, "skipped": 0})
        entry["excluded"] += int(excluded)
        entry["skipped"] += int(skipped)
        if arm:  # the '' arm holds the users in no arm: excluded, or with variant-less exposures only
            entry["users"][str(arm)] = int(users)
            for name, values in zip(names, zip(*sums, strict=True), strict=True):
                entry["metrics"][name][str(arm)] = MeasureSums(*(int(value) for value in values))
    experiments = {
        key: ExperimentSums(
            experiment=key, users=dict(sorted(entry["users"].items())),
            metrics={name: dict(sorted(arms.items())) for name, arms in entry["metrics"].items()},
            excluded_multiple_variants=entry["excluded"], skipped_without_variant=entry["skipped"])
        for key, entry in sorted(found.items())}
    seen = {str(name) for name in row["seen_events"]}
    return ExposureSums(experiments=experiments, events_not_found=frozenset(settings.metric_events) - seen)
