"""The demo's planted behaviours come out of the real segmentation (issue 5, Show).

Each user's archetype is read from the population; their segment is computed the way the service
computes it: the population's events file is written, loaded with the events file loader and
segmented with the default configuration (thresholds, meaningful events, configured features).
The archetype -> segment correspondence is that of docs/methods.md#segment-rules, written out here by hand.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from exporter.analysis.segments import SEGMENT_NAMES, assign_segments
from exporter.config import load_config
from exporter.demo.events_file import write_events_file
from exporter.demo.population import ARCHETYPES, generate_population
from exporter.events.file_loader import load_events_file
from exporter.events.log_activity import user_activity

# The segment each planted archetype should land in.
EXPECTED_SEGMENT = {
    "power": "power",
    "core": "core",
    "casual": "casual",
    "newcomer": "new",
    "slipping": "at_risk",
    "dormant": "dormant",
    "churned": "churned",
}
MIN_AGREEMENT = 0.85  # the bar, over every user of the population
MIN_ARCHETYPE_AGREEMENT = 0.75  # no single behaviour may be lost inside a good total

# The demo's seed and two others, at different weekdays and times of day (today is partial).
CASES = [
    (42, datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)),
    (1, datetime(2026, 3, 10, 14, 37, tzinfo=timezone.utc)),
    (7, datetime(2026, 6, 3, 8, 5, tzinfo=timezone.utc)),
]


def segments_by_user(path, now: datetime) -> dict[str, str]:
    """User id -> segment name, through the service's own loader, analysis and defaults."""
    config = load_config(environ={})
    log = load_events_file(path).log
    activity = user_activity(
        log,
        now=int(now.timestamp()),
        meaningful_events=config.segments.meaningful_events,
        feature_events={feature.event: feature.name for feature in config.features if feature.event},
    )
    segments = assign_segments(activity, config.segments.thresholds)
    return {log.user_names[user]: SEGMENT_NAMES[segment] for user, segment in zip(activity.users, segments)}


@pytest.mark.parametrize(("seed", "now"), CASES, ids=[f"seed-{seed}" for seed, _ in CASES])
def test_segmentation_recovers_the_planted_archetypes(tmp_path, seed, now):
    population = generate_population(seed, now=now)
    path = tmp_path / "events.jsonl"
    write_events_file(population, path, upto=now.timestamp())
    segment = segments_by_user(path, now)

    planted = {user: ARCHETYPES[code] for user, code in zip(population.user_ids, population.user_archetype)}
    # A user the segmentation does not see at all counts as a miss.
    recovered = {user: segment.get(user) == EXPECTED_SEGMENT[archetype] for user, archetype in planted.items()}
    agreement = sum(recovered.values()) / len(planted)
    misses = Counter((planted[user], segment.get(user)) for user, ok in recovered.items() if not ok)
    assert agreement >= MIN_AGREEMENT, misses

    per_archetype = Counter(planted.values())
    hits = Counter(planted[user] for user, ok in recovered.items() if ok)
    assert set(per_archetype) == set(EXPECTED_SEGMENT)
    for archetype, count in per_archetype.items():
        assert hits[archetype] / count >= MIN_ARCHETYPE_AGREEMENT, (archetype, misses)
