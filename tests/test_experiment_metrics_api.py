"""Experiments measured on identified events, through every layer: a purpose-built events file and a
fake Experimentation Service on loopback -> the file backend -> the area -> ``GET
/api/v1/experiment-results`` and ``/metrics``.

The events file is generated here with known per-user behaviour (a habit that carries over from
the pre-period into the window, a treatment that deploys a little more and fails three times as
often); the expected numbers are recomputed from the same event list, user by user, with
statsmodels' unequal-variance z-test and a direct numpy CUPED. Bad input from the issue: a metric
whose event never occurs, a ratio whose denominator is 0 for everyone, exposures without a
variant, a user exposed to both variants, and an experiment the service does not know.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from exporter.config import ConfigError, load_config
from tests.fakes.experimentation import FakeExperimentation, experiment_record

DAY = 86_400
WINDOW = 14 * DAY
KNOWN = experiment_record(1, target_sample_size=1000)  # listed; its exposures carry its id
NAMED = experiment_record(2)  # listed; its exposures carry its name
BAD_ALPHA = experiment_record(3, significance_level=1.5)  # listed with a significance level that is no probability
EVENTS_ONLY = "homepage-hero"  # exposures only
METRICS = {
    "metrics": [
        {"name": "deploys", "kind": "count", "event": "deploy"},
        {"name": "activated", "kind": "conversion", "event": "app.activated", "window_days": 7},
        {"name": "failures_per_deploy", "kind": "ratio", "numerator": "deploy.failed", "denominator": "deploy",
         "guardrail": True, "higher_is_better": False},
        {"name": "ghost", "kind": "count", "event": "never.happens"},
        {"name": "per_legacy_build", "kind": "ratio", "numerator": "deploy", "denominator": "legacy.build"},
    ],
    "cuped": {"pre_period_days": 14},
}
USERS_PER_ARM = 300
EXCLUDED = 2  # users exposed to both variants of KNOWN
SKIPPED = 3  # exposure events of KNOWN without a variant


@dataclass
class EventsFile:
    """The events, and the facts the expectations need: who was first exposed when, in which arm."""

    lines: list[str] = field(default_factory=list)
    events: list[tuple[str, str, int]] = field(default_factory=list)  # user, name, t (every non-exposure event)
    first_exposure: dict[str, tuple[int, str]] = field(default_factory=dict)  # KNOWN's counted users

    def add(self, user: str, name: str, t: int, props: dict[str, str] | None = None) -> None:
        stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {"user_id": user, "event": name, "timestamp": stamp} | ({"props": props} if props else {})
        self.lines.append(json.dumps(record) + "\n")
        if name != "experiment.exposure":
            self.events.append((user, name, t))

    def expose(self, user: str, t: int, experiment: str, variant: str | None) -> None:
        self.add(user, "experiment.exposure", t,
                 {"experiment": experiment} | ({"variant": variant} if variant is not None else {}))

    def write(self, path: Path) -> Path:
        path.write_text("".join(self.lines))
        return path


def poisson_times(rng: np.random.Generator, rate: float, start: int, stop: int) -> list[int]:
    return sorted(int(t) for t in rng.integers(start, stop, rng.poisson(rate * (stop - start) / DAY)))


def generated_events(now: int, seed: int = 19) -> EventsFile:
    rng = np.random.default_rng(seed)
    made = EventsFile()
    for number in range(2 * USERS_PER_ARM):
        user, variant = f"user-{number:04d}", ("control", "treatment")[number % 2]
        t0 = now - int(rng.integers(15 * DAY, 40 * DAY))
        habit = float(rng.gamma(2.0, 0.15))  # deploys per day, the user's own
        made.expose(user, t0, KNOWN["id"], variant)
        made.expose(user, t0 + DAY, KNOWN["id"], variant)  # a later exposure does not move the window
        made.first_exposure[user] = (t0, variant)
        for t in poisson_times(rng, habit, t0 - 20 * DAY, t0):  # some before the pre-period too
            made.add(user, "deploy", t)
        lift, failing = (1.0, 0.1) if variant == "control" else (1.15, 0.3)
        for t in poisson_times(rng, habit * lift, t0, t0 + WINDOW + 3 * DAY):  # some after the window
            made.add(user, "deploy", t)
            if rng.random() < failing:
                made.add(user, "deploy.failed", t + 60)
        if rng.random() < (0.3 if variant == "control" else 0.4):
            made.add(user, "app.activated", t0 + int(rng.integers(0, 7 * DAY)))
        made.add(user, "legacy.build", t0 - 30 * DAY)  # the ratio's denominator: never in a window
    for number in range(EXCLUDED):
        user, t0 = f"both-{number}", now - 20 * DAY
        made.expose(user, t0, KNOWN["id"], "control")
        made.expose(user, t0 + 3_600, KNOWN["id"], "treatment")
        made.add(user, "deploy", t0 + 60)
    for number in range(SKIPPED):
        made.expose(f"user-{number:04d}", now - 16 * DAY, KNOWN["id"], None)
    for number in range(40):
        made.expose(f"named-{number}", now - 10 * DAY, NAMED["name"], ("control", "treatment")[number % 2])
        made.expose(f"hero-{number}", now - 5 * DAY, EVENTS_ONLY, ("control", "hero-video")[number % 2])
        made.expose(f"bad-{number}", now - 5 * DAY, BAD_ALPHA["id"], ("control", "treatment")[number % 2])
        for hour in range(1 + number % 3):
            made.add(f"bad-{number}", "deploy", now - 5 * DAY + 3_600 * hour)
        made.add(f"hero-{number}", "deploy", now - 5 * DAY + number * 600)
    random.Random(seed).shuffle(made.lines)  # the file's order is not time order
    return made


@pytest.fixture
async def upstream(aiohttp_server) -> tuple[FakeExperimentation, str]:
    fake = FakeExperimentation([KNOWN, NAMED, BAD_ALPHA], {KNOWN["id"]: [(2000, 400), (2000, 520)],
                                                           NAMED["id"]: [(500, 100), (500, 101)],
                                                           BAD_ALPHA["id"]: [(500, 100), (500, 101)]})
    return fake, str((await aiohttp_server(fake.app())).make_url("/"))


def configured(url: str | None, events: Path | None, **more) -> dict:
    return {"sources.experimentation.url": url, "sources.experimentation.max_retries": 1,
            "sources.experimentation.timeout_seconds": 1.0, "events.path": None if events is None else str(events),
            "experiment_metrics": METRICS, **more}


def by_id(body: dict) -> dict[str, dict]:
    return {experiment["experiment_id"]: experiment for experiment in body["experiments"]}


def metric(experiment: dict, name: str) -> dict:
    return next(one for one in experiment["metrics"] if one["metric"] == name)


# --- the independent computation -----------------------------------------------------------------

def per_user(made: EventsFile, name: str, now: int) -> dict[str, tuple[int, int]]:
    """KNOWN's counted users: (count of ``name`` in the window, in the 14-day pre-period), by the
    definitions read literally (events after now do not exist yet)."""
    times = defaultdict(list)
    for user, event, t in made.events:
        if event == name and t <= now:
            times[user].append(t)
    return {user: (sum(t0 <= t < t0 + WINDOW for t in times[user]), sum(t0 - WINDOW <= t < t0 for t in times[user]))
            for user, (t0, _) in made.first_exposure.items()}


def z_test(treatment: np.ndarray, control: np.ndarray) -> float:
    return float(CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).ztest_ind(usevar="unequal")[1])


# --- the tests -----------------------------------------------------------------------------------

async def test_metrics_exposure_and_the_guardrail_match_an_independent_computation(make_client, upstream, clock,
                                                                                     tmp_path):
    fake, url = upstream
    now = int(clock())
    made = generated_events(now)
    client, _ = await make_client(**configured(url, made.write(tmp_path / "events.jsonl")))
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 200
    body = await response.json()
    assert body["sources"]["events"]["status"] == "up"
    experiments = by_id(body)
    known = experiments[KNOWN["id"]]

    assert known["exposure"] == {"users": 2 * USERS_PER_ARM, "excluded_multiple_variants": EXCLUDED,
                                 "skipped_without_variant": SKIPPED}
    assert [one["metric"] for one in known["metrics"]] == [m["name"] for m in METRICS["metrics"]]
    for one in known["metrics"]:
        control, treatment = one["variants"]
        assert (control["variant_id"], treatment["variant_id"]) == ("control", "treatment")
        assert control["users"] == treatment["users"] == USERS_PER_ARM
        for name in ("absolute_lift", "absolute_lift_ci", "relative_lift", "relative_lift_ci", "p_value",
                     "adjusted_p_value"):
            assert control[name] is None
        if control["cuped"] is not None:
            assert control["cuped"]["absolute_lift"] is None and control["cuped"]["p_value"] is None

    # deploys, end to end: statsmodels' unequal-variance z-test and a direct numpy CUPED
    values = per_user(made, "deploy", now)
    arms = {arm: np.array([values[user] for user, (_, v) in made.first_exposure.items() if v == arm], dtype=float)
            for arm in ("control", "treatment")}
    y_c, y_t = arms["control"][:, 0], arms["treatment"][:, 0]
    both = np.concatenate([arms["control"], arms["treatment"]])
    theta = np.cov(both[:, 0], both[:, 1], ddof=1)[0, 1] / np.var(both[:, 1], ddof=1)
    mean_x = both[:, 1].mean()
    adjusted = {arm: rows[:, 0] - theta * (rows[:, 1] - mean_x) for arm, rows in arms.items()}
    all_adjusted = np.concatenate(list(adjusted.values()))
    deploys = metric(known, "deploys")
    control, treatment = deploys["variants"]
    assert deploys["status_codes"] == []
    assert control["mean"] == pytest.approx(y_c.mean(), rel=1e-9)
    assert control["std"] == pytest.approx(y_c.std(ddof=1), rel=1e-9)
    assert treatment["relative_lift"] == pytest.approx(y_t.mean() / y_c.mean() - 1, rel=1e-9)
    assert treatment["p_value"] == pytest.approx(z_test(y_t, y_c), rel=1e-6)
    assert treatment["cuped"]["theta"] == pytest.approx(theta, rel=1e-9)
    assert treatment["cuped"]["variance_reduction"] == pytest.approx(
        1 - np.var(all_adjusted, ddof=1) / np.var(both[:, 0], ddof=1), rel=1e-9)
    assert 0.2 < treatment["cuped"]["variance_reduction"] < 0.9  # the habit carries over
    assert treatment["cuped"]["absolute_lift"] == pytest.approx(
        adjusted["treatment"].mean() - adjusted["control"].mean(), rel=1e-9)
    cuped_p = z_test(adjusted["treatment"], adjusted["control"])
    assert treatment["cuped"]["p_value"] == pytest.approx(cuped_p, rel=1e-6)
    assert treatment["adjusted_p_value"] == pytest.approx(cuped_p, rel=1e-6)  # one treatment: Holm changes nothing

    activated = metric(known, "activated")
    converted = {user for user, name, t in made.events if name == "app.activated"}
    for row in activated["variants"]:
        share = np.mean([user in converted for user, (_, v) in made.first_exposure.items() if v == row["variant_id"]])
        assert row["mean"] == pytest.approx(share, rel=1e-9)

    # the guardrail: the primary metric says ship, failures per deploy are significantly worse
    failures = metric(known, "failures_per_deploy")
    failing = failures["variants"][1]
    assert failing["std"] is None and failing["cuped"] is None
    assert failing["relative_lift"] > 1.0 and failing["adjusted_p_value"] < 0.001
    assert known["recommendation"] == "investigate_guardrail" and known["winner"] is None
    assert "guardrail metric failures_per_deploy (higher is worse)" in known["recommendation_text"]
    assert known["recommendation_text"].startswith("treatment wins on the primary metric")

    # bad input: an event that never occurs; a denominator that is 0 for everyone (its events are all
    # before the exposures)
    ghost = metric(known, "ghost")
    assert ghost["status_codes"] == ["event_not_found", "cuped_constant_covariate"]
    assert ghost["variants"][1]["relative_lift"] is None and "baseline_zero" in ghost["variants"][1]["status_codes"]
    legacy = metric(known, "per_legacy_build")
    assert "denominator_zero" in legacy["status_codes"] and "event_not_found" not in legacy["status_codes"]
    assert all(row["mean"] is None and row["relative_lift"] is None and "denominator_zero" in row["status_codes"]
               for row in legacy["variants"])

    # an experiment whose significance level is no probability: its read-out says so, its metrics are
    # measured at 0.05
    bad = experiments[BAD_ALPHA["id"]]
    assert bad["status_codes"] == ["invalid_alpha"] and bad["exposure"]["users"] == 40
    assert metric(bad, "deploys")["variants"][1]["relative_lift_ci"] is not None

    # named by its name in the events, reported under its id; the one the service does not know
    assert experiments[NAMED["id"]]["exposure"]["users"] == 40
    assert NAMED["name"] not in experiments
    hero = experiments[EVENTS_ONLY]
    assert hero["status"] == "events_only" and hero["status_codes"] == ["events_only"]
    assert hero["recommendation"] == "no_data" and hero["control"] == "control"
    assert [v["variant_id"] for v in hero["variants"]] == ["control", "hero-video"]
    assert hero["exposure"]["users"] == 40 and metric(hero, "deploys")["variants"][0]["mean"] == 1.0
    assert list(experiments)[-1] == EVENTS_ONLY  # after the service's experiments

    # /metrics: the published experiments' treatments, the same numbers as the JSON
    text = await (await client.get("/metrics")).text()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}

    def sample(name: str, **labels: str) -> float | None:
        return found.get((name, tuple(sorted(({"experiment_id": KNOWN["id"]} | labels).items()))))

    assert sample("analytics_experiment_metric_relative_lift", metric="deploys", variant="treatment") == \
        treatment["relative_lift"]
    assert sample("analytics_experiment_metric_p_value", metric="deploys", variant="treatment") == \
        treatment["adjusted_p_value"]
    assert sample("analytics_experiment_metric_variance_reduction", metric="deploys") == \
        treatment["cuped"]["variance_reduction"]
    assert sample("analytics_experiment_metric_variance_reduction", metric="failures_per_deploy") is None
    assert sample("analytics_experiment_metric_relative_lift", metric="deploys", variant="control") is None
    assert sample("analytics_experiment_metric_relative_lift", metric="ghost", variant="treatment") is None
    assert sample("analytics_experiment_recommendation", recommendation="investigate_guardrail") == 1.0
    assert not any(dict(labels).get("experiment_id") == EVENTS_ONLY for _, labels in found)


async def test_one_events_question_serves_every_experiment_of_a_snapshot(make_client, upstream, clock, tmp_path):
    """The exposures and sums are one memoized question: asked once for the section, the status
    filters and /metrics of the same moment (the clock stands still here)."""
    fake, url = upstream
    client, service = await make_client(**configured(url, generated_events(int(clock())).write(tmp_path / "e.jsonl")))
    for path in ("/api/v1/experiment-results", "/api/v1/experiment-results?status=running", "/metrics",
                 "/api/v1/experiment-results"):
        assert (await client.get(path)).status == 200
    asked = [key for key in service.memo.keys() if key[:2] == ("events", "exposure_sums")]
    names = {record["name"]: record["id"] for record in (KNOWN, NAMED, BAD_ALPHA)}
    assert len(asked) == 1 and asked[0][3] == tuple(sorted(names.items()))


async def test_a_status_filter_leaves_out_the_experiments_known_only_from_events(make_client, upstream, clock,
                                                                                 tmp_path):
    fake, url = upstream
    client, _ = await make_client(**configured(url, generated_events(int(clock())).write(tmp_path / "e.jsonl")))
    body = await (await client.get("/api/v1/experiment-results?status=running")).json()
    assert set(by_id(body)) == {KNOWN["id"], NAMED["id"], BAD_ALPHA["id"]}
    assert all("metrics" in experiment for experiment in body["experiments"])


async def test_a_failing_events_source_leaves_the_read_outs_served(make_client, upstream, tmp_path):
    fake, url = upstream
    client, _ = await make_client(**configured(url, tmp_path / "missing.jsonl"))
    response = await client.get("/api/v1/experiment-results")
    assert response.status == 200
    body = await response.json()
    assert body["sources"]["events"]["status"] == "down"
    assert "missing.jsonl does not exist" in body["sources"]["events"]["error"]
    experiments = by_id(body)
    assert set(experiments) == {KNOWN["id"], NAMED["id"], BAD_ALPHA["id"]}
    known = experiments[KNOWN["id"]]
    assert known["recommendation"] == "ship" and known["winner"] == "treatment"  # nothing lost
    assert "metrics" not in known and "exposure" not in known
    assert known["status_codes"] == ["event_metrics_unavailable"]


async def test_without_the_experimentation_service_every_experiment_is_events_only(make_client, clock, tmp_path):
    client, _ = await make_client(**configured(None, generated_events(int(clock())).write(tmp_path / "e.jsonl")))
    body = await (await client.get("/api/v1/experiment-results")).json()
    assert set(body["sources"]) == {"events"}
    assert {e["experiment_id"]: e["status"] for e in body["experiments"]} == {
        KNOWN["id"]: "events_only", NAMED["name"]: "events_only", BAD_ALPHA["id"]: "events_only",
        EVENTS_ONLY: "events_only"}


async def test_without_experiment_metrics_the_section_is_as_before(make_client, upstream, clock, tmp_path):
    fake, url = upstream
    settings = configured(url, generated_events(int(clock())).write(tmp_path / "e.jsonl"))
    del settings["experiment_metrics"]
    client, _ = await make_client(**settings)
    body = await (await client.get("/api/v1/experiment-results")).json()
    assert set(body["sources"]) == {"experimentation"}
    assert all("metrics" not in e and "exposure" not in e for e in body["experiments"])
    assert by_id(body)[KNOWN["id"]]["recommendation"] == "ship"


async def test_the_experiments_known_only_from_events_are_bounded(make_client, upstream, clock, tmp_path):
    """A producer writing a new label into every exposure: the section lists the largest 100."""
    fake, url = upstream
    made, now = EventsFile(), int(clock())
    for number in range(130):
        for user in range(1 + number // 10):
            made.expose(f"user-{number}-{user}", now - DAY, f"label-{number:03d}", "control")
    client, _ = await make_client(**configured(url, made.write(tmp_path / "e.jsonl")))
    body = await (await client.get("/api/v1/experiment-results")).json()
    listed = [e["experiment_id"] for e in body["experiments"] if e["status"] == "events_only"]
    assert listed == [f"label-{number:03d}" for number in range(30, 130)]


@pytest.mark.parametrize("metrics, fragment", [
    ([{"name": "m", "kind": "rate", "event": "e"}], "experiment_metrics.metrics[0].kind: 'rate' is not one of "
                                                    "conversion, count, ratio"),
    ([{"name": "m", "kind": "ratio", "numerator": "e"}], "experiment_metrics.metrics[0]: metric 'm': denominator "
                                                         "(kind ratio) must be an event name (got None)"),
    ([{"name": "m", "kind": "count", "event": "e", "window_days": 0}], "experiment_metrics.metrics[0]: metric 'm': "
                                                                       "window_days must be a whole number of days"),
])
def test_configuration_errors_name_the_key(metrics, fragment):
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"experiment_metrics": {"metrics": metrics}})
    assert fragment in str(raised.value)


def test_the_plausible_preset_cannot_measure_experiments():
    with pytest.raises(ConfigError, match="experiment_metrics: .* preset plausible_events_v2"):
        load_config(environ={}, overrides={"events.kind": "clickhouse", "events.url": "http://clickhouse:8123",
                                           "events.preset": "plausible_events_v2", "events.user_id_property": "uid",
                                           "experiment_metrics": {}})


def test_the_default_is_off():
    assert load_config(environ={}).experiment_metrics is None
    assert load_config(environ={}, overrides={"experiment_metrics": {}}).experiment_metrics.cuped.pre_period_days == 14
