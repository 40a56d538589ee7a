"""The demo's experiment exposures: events that say who saw which variant, and the metrics measured on them.

The simulated Experimentation Service assigns users to variants (:func:`simulate_experiments`);
this module turns those assignments into ``experiment.exposure`` events in the identified events
file (docs/experiment-metrics.md#who-is-in-the-experiment): a user assigned at ``a`` is exposed the
next time they do something on the portal, at the second of their first custom event at or after
``a`` (a user who never comes back is never exposed). An exposure shares its second with an event
the user did anyway, so it adds no active day, no user and no step to any other analysis.

Beside the plain case, the file holds what the feature reports on (each on purpose, no random
draw): the experiment "TechDocs Search Ranking" named by its name rather than its id, two users of
"One-Click Deploy Button" exposed to both variants (excluded), three variant-less exposures of
"Service Catalog Search Autocomplete" (skipped), and an experiment the Experimentation Service
does not know, "homepage-hero", over the users active in its last three weeks (``events_only``).

:data:`EXPERIMENT_METRICS` is the demo's ``experiment_metrics`` configuration: the users' own
habits carry over from the CUPED pre-period into the window after the exposure, so the count
metrics show a real variance reduction; the ratio metric is a guardrail.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.analysis.experiments.event_metrics import EXPERIMENT_PROPERTY, EXPOSURE_EVENT, VARIANT_PROPERTY
from exporter.demo import catalog
from exporter.demo.experimentation import simulate_experiments
from exporter.demo.population import Population

EXPERIMENT_METRICS: dict[str, Any] = {
    "exposure_event": EXPOSURE_EVENT,
    "metrics": [
        {"name": "deploys", "kind": "count", "event": catalog.DEPLOY_APPLICATION},
        {"name": "docs_views", "kind": "count", "event": catalog.VIEW_DOCUMENTATION},
        {"name": "deployed", "kind": "conversion", "event": catalog.DEPLOYMENT_COMPLETE, "window_days": 7},
        {"name": "builds_per_deploy", "kind": "ratio", "numerator": catalog.BUILD_SUCCEEDED,
         "denominator": catalog.DEPLOY_APPLICATION, "guardrail": True},
    ],
    "cuped": {"pre_period_days": 14},
}

NAMED_BY_NAME = "techdocs-ranking"  # its exposures carry the experiment's name, not its id
TWO_VARIANTS = ("one-click-deploy", 2)  # this many of its exposed users also see the other variant
WITHOUT_VARIANT = ("catalog-autocomplete", 3)  # this many of its exposures lack the variant
EVENTS_ONLY = "homepage-hero"
EVENTS_ONLY_VARIANTS = ("control", "hero-video")
EVENTS_ONLY_DAYS = 21


@dataclass(frozen=True)
class Exposure:
    user: int  # index into the population's users
    ts: int
    experiment: str
    variant: str | None


def exposure_lines(population: Population, *, upto: float) -> list[str]:
    """The exposure events up to ``upto``, as lines of the events file (in time order)."""
    users = [json.dumps(user_id) for user_id in population.user_ids]
    lines = []
    for exposure in sorted(demo_exposures(population, upto=upto), key=lambda e: (e.ts, e.user)):
        properties = {EXPERIMENT_PROPERTY: exposure.experiment}
        if exposure.variant is not None:
            properties[VARIANT_PROPERTY] = exposure.variant
        stamp = np.datetime_as_string(np.datetime64(exposure.ts, "s"), unit="s")
        lines.append(f'{{"user_id": {users[exposure.user]}, "event": {json.dumps(EXPOSURE_EVENT)}, '
                     f'"timestamp": "{stamp}Z", "props": {json.dumps(properties)}}}\n')
    return lines


def demo_exposures(population: Population, *, upto: float) -> list[Exposure]:
    """Every exposure of the demo's experiments, and of the one only the events know."""
    next_event = _NextEvent(population, upto)
    exposures = []
    for experiment in simulate_experiments(seed=population.seed, now=population.now, user_ids=population.user_ids):
        plan = experiment.plan
        at = next_event.after(experiment.assigned_user, experiment.assigned_at)
        stopped = experiment.stopped_at.timestamp() if experiment.stopped_at else np.inf
        exposed = np.flatnonzero((at >= 0) & (at <= stopped))  # a stopped experiment exposes nobody
        label = plan.name if plan.key == NAMED_BY_NAME else experiment.id
        names = [variant.name for variant in plan.variants]
        found = [Exposure(int(experiment.assigned_user[k]), int(at[k]), label, names[experiment.assigned_variant[k]])
                 for k in exposed]
        if plan.key == TWO_VARIANTS[0]:
            found += [Exposure(e.user, e.ts, label, names[1 - names.index(e.variant)]) for e in found[:TWO_VARIANTS[1]]]
        if plan.key == WITHOUT_VARIANT[0]:
            found += [Exposure(e.user, e.ts, label, None) for e in found[-WITHOUT_VARIANT[1]:]]
        exposures += found
    return exposures + _events_only(population, next_event, upto)


def _events_only(population: Population, next_event: _NextEvent, upto: float) -> list[Exposure]:
    """A test the events know and the Experimentation Service does not: every user who came by in
    its three weeks, split by a hash of their id."""
    start = int(upto) - EVENTS_ONLY_DAYS * catalog.DAY_SECONDS
    users = np.arange(population.n_users)
    at = next_event.after(users, np.full(len(users), start))
    return [Exposure(int(user), int(at[user]), EVENTS_ONLY,
                     EVENTS_ONLY_VARIANTS[zlib.crc32(f"{EVENTS_ONLY}:{user_id}".encode()) % 2])
            for user, user_id in enumerate(population.user_ids) if at[user] >= 0]


class _NextEvent:
    """Each user's custom events up to ``upto`` (the events file's), sorted by user then time."""

    def __init__(self, population: Population, upto: float) -> None:
        visible = population.visible_count(upto)
        custom = np.flatnonzero(population.event_name[:visible] > 0)
        user = population.event_user[custom].astype(np.int64)
        self.keys = np.sort(user << 40 | population.event_ts[custom])  # times are below 2**40

    def after(self, users: np.ndarray, moments: np.ndarray) -> np.ndarray:
        """The time of each user's first custom event at or after the moment, -1 where none."""
        users = users.astype(np.int64)
        wanted = users << 40 | np.ceil(moments).astype(np.int64)
        found = np.searchsorted(self.keys, wanted)
        hit = found < len(self.keys)
        hit[hit] = (self.keys[found[hit]] >> 40) == users[hit]
        return np.where(hit, self.keys[np.minimum(found, len(self.keys) - 1)] & ((1 << 40) - 1), -1)
