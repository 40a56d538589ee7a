"""Write the population's identified product events as a JSON Lines file (docs/upstreams.md#events-file).

One line per custom event (page views are Plausible's business, not the event tracker's), then the
experiment exposures (:mod:`exporter.demo.exposures`)::

    {"user_id": "u-0042", "event": "scaffolding.complete.service_created",
     "timestamp": "2026-11-20T10:15:30Z", "props": {"team": "payments"}}

A path ending in ``.gz`` is gzip-compressed. The file is written next to its final name and
moved into place, so a reader never sees half of it.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from exporter.demo import catalog
from exporter.demo.exposures import exposure_lines
from exporter.demo.population import Population


def write_events_file(population: Population, path: Path, *, upto: float) -> int:
    """Write the custom events with ``timestamp <= upto`` to ``path``; return how many."""
    p = population
    visible = p.visible_count(upto)
    chosen = np.flatnonzero(p.event_name[:visible] > 0)
    # Each distinct string is JSON-encoded once; the lines are then plain concatenation.
    users = [json.dumps(user_id) for user_id in p.user_ids]
    events = [json.dumps(name) for name in catalog.EVENT_NAMES]
    teams = [json.dumps(team) for team in catalog.TEAMS]
    stamps = np.datetime_as_string(p.event_ts[chosen].astype("datetime64[s]"), unit="s")
    user = p.event_user[chosen]
    lines = [
        f'{{"user_id": {users[u]}, "event": {events[e]}, "timestamp": "{stamp}Z", '
        f'"props": {{"team": {teams[p.user_team[u]]}}}}}\n'
        for u, e, stamp in zip(user.tolist(), p.event_name[chosen].tolist(), stamps.tolist())
    ]
    lines += exposure_lines(population, upto=upto)

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    if path.name.endswith(".gz"):
        # mtime=0 keeps the bytes identical for the same population.
        with gzip.GzipFile(partial, "wb", mtime=0) as raw:
            raw.write("".join(lines).encode("utf-8"))
    else:
        partial.write_text("".join(lines), encoding="utf-8")
    os.replace(partial, path)
    return len(lines)
