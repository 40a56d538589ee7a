"""A seeded synthetic population of developers using the platform's portal.

Everything the demo shows comes from this one population: the simulated Plausible computes its
answers from the events, the identified events file is written from them, and the simulated
Experimentation and Feedback services draw their users from :attr:`Population.user_ids`.

How it is built (all vectorised: a few hundred users over 90 days take tens of milliseconds):

1. **Users** get a team and a behaviour archetype — power, core, casual, newcomer (first seen in
   the last 14 days), slipping (active before, fading over the last month), dormant (gone 29-56
   days) and churned (gone more than 56 days) — plus a lifecycle: the day they first appear and
   the day they leave. Some established users join during the window, so that churn does not
   make the whole platform look like it is shrinking.
2. **Active days** follow a personal weekly routine: each user has habitual weekdays (one for a
   casual user, most of them for a power user) kept most weeks, and now and then visits on
   other days; the lifecycle bounds it. Slipping users left their routine a month or so ago
   and have only dropped in a few times since. Core users are *focused*: they work with at
   most two of the platform's features, where power users range over all of them. These are
   the behaviours the segments of docs/methods.md#segment-rules describe, planted sharply enough that the
   segmentation recovers each user's archetype (``tests/test_demo_segments.py``).
3. **Sessions** (1-6 per active day) sit in working hours, well apart. Each session performs
   one *task* (browse docs, deploy, create a service, ...) drawn from the user's preferences;
   the day's first session opens with a login when the SSO session has expired;
   over the window Configure Monitoring gains favour, Run Pipeline loses it, and documentation
   stays level.
4. **Tasks** expand into page views and custom events with realistic drop-off and delays. A
   created service is deployed in a later session (hours or a day or two later), which is what
   lets the onboarding and service-creation funnels complete. Finally the events are cut into
   sessions by Plausible's own rule (30 idle minutes, or UTC midnight).
5. **Planted anomalies**, so the demo's forecasts have something to flag
   (docs/forecasting.md#the-demo): a *deployment outage* on the weekday a week ago (or the last
   weekday before it), when no deployment could start -- every deploy session of the day
   stopped at the Deployments page -- and an *incident* yesterday, when every session ended by
   reloading the monitoring dashboards, a page view a minute for eight minutes (page views
   only: Plausible's page views spike, the identified events do not). They take no random
   draw, so everything else is as it would be without them; :attr:`Population.planted` says
   which days they are.

Timestamps are int64 epoch seconds; the columns are sorted by time. Events run to ``now +
horizon`` so that data keeps "arriving" while a demo runs: consumers show only what is at or
before their clock.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from exporter.demo import catalog

ARCHETYPES: tuple[str, ...] = (
    "power",
    "core",
    "casual",
    "newcomer",
    "slipping",
    "dormant",
    "churned",
)
POWER, CORE, CASUAL, NEWCOMER, SLIPPING, DORMANT, CHURNED = range(len(ARCHETYPES))

DAY = catalog.DAY_SECONDS
HOUR = 3_600
MINUTE = 60


@dataclass(frozen=True)
class _Archetype:
    """How one kind of user behaves.

    Each user keeps a personal weekly routine: ``habitual_weekdays`` (a range, drawn per user)
    of the five weekdays, kept with probability ``attendance`` each week; any other weekday is a
    visit with probability ``other_weekday``, a weekend day with ``weekend``. A routine rather
    than independent daily coin flips is what makes a once-a-week user look like one over any
    four weeks, as people's habits do.
    """

    share: float
    habitual_weekdays: tuple[int, int]  # inclusive range
    attendance: float
    other_weekday: float
    weekend: float
    extra_sessions: float  # Poisson mean of sessions beyond the first on an active day
    task_weights: tuple[float, ...]  # over TASKS, before per-user and seasonal modulation
    focused: bool = False  # sticks to at most _FOCUS_FEATURES features (see _focus)


# Fields: share, habitual weekdays, attendance, other weekday, weekend, extra sessions, task
# weights. Order of TASKS: glance, docs, catalog, create, deploy, pipeline, monitoring.
_LAPSING_TASKS = (0.30, 0.22, 0.15, 0.05, 0.13, 0.08, 0.07)
_ARCHETYPES: dict[int, _Archetype] = {
    POWER: _Archetype(
        0.08, (4, 5), 0.92, 0.40, 0.12, 2.0, (0.15, 0.15, 0.15, 0.08, 0.22, 0.14, 0.11)
    ),
    CORE: _Archetype(
        0.27, (3, 3), 0.85, 0.06, 0.03, 0.8, (0.20, 0.20, 0.15, 0.06, 0.17, 0.12, 0.10),
        focused=True,
    ),
    CASUAL: _Archetype(
        0.30, (1, 1), 0.92, 0.01, 0.01, 0.2, (0.35, 0.25, 0.15, 0.04, 0.10, 0.06, 0.05)
    ),
    NEWCOMER: _Archetype(
        0.10, (2, 4), 0.80, 0.10, 0.04, 0.8, (0.25, 0.30, 0.15, 0.08, 0.10, 0.06, 0.06)
    ),
    SLIPPING: _Archetype(0.10, (3, 4), 0.85, 0.06, 0.03, 0.6, _LAPSING_TASKS),
    DORMANT: _Archetype(0.06, (2, 3), 0.75, 0.06, 0.03, 0.4, _LAPSING_TASKS),
    CHURNED: _Archetype(0.09, (2, 3), 0.75, 0.06, 0.03, 0.4, _LAPSING_TASKS),
}

# Established users who join during the window rather than before it, at least this many days
# before today: by then their routine fills the last four weeks that describe them.
_LATE_JOINER_SHARE = 0.25
_LATE_JOIN_SETTLED_DAYS = 28
# Slipping users kept their routine until 28-35 days ago, so the four weeks before the last
# four still hold most of it; since then they have dropped in only 1-3 times, on days among the
# last _RECENT_DAYS before today (today is only partly over), recently enough not to look gone.
_SLIPPING_SINCE_DAYS = (28, 35)
_SLIPPING_RETURN_VISITS = (1, 3)
_RECENT_DAYS = 27
# Focused users work with at most this many of the platform's features.
_FOCUS_FEATURES = 2
_ONBOARDING_DAYS = 14
# The portal's SSO session lasts about a day: after a day or more away the first session of the
# day opens with a login; from one day to the next the session has expired about half the time.
_LOGIN_PROBABILITY_NEXT_DAY = 0.5
_MAX_SESSIONS_PER_DAY = 6
_WORKDAY_START = 7 * HOUR
_WORKDAY_LENGTH = 12 * HOUR
# Planned sessions last at most ~20 minutes and start at least 75 minutes apart, comfortably
# more than Plausible's 30 idle minutes that end a session.
_SESSION_SPACING = 75 * MINUTE
_SESSION_TIMEOUT = 30 * MINUTE


@dataclass(frozen=True)
class _Step:
    """One step of a task: a page view (``pages``) or a custom event (``event``).

    ``reach`` is the probability of reaching this step given the previous one was reached;
    ``delay`` the uniform range of seconds since the previous step. Custom events happen on the
    page most recently viewed in the session.
    """

    pages: tuple[str, ...] = ()
    event: str = ""
    reach: float = 1.0
    delay: tuple[int, int] = (0, 0)


def _view(*pages: str, reach: float = 1.0, delay: tuple[int, int] = (0, 0)) -> _Step:
    return _Step(pages=pages, reach=reach, delay=delay)


def _do(event: str, reach: float, delay: tuple[int, int]) -> _Step:
    return _Step(event=event, reach=reach, delay=delay)


@dataclass(frozen=True)
class _Task:
    name: str
    steps: tuple[_Step, ...]
    source_weights: tuple[float, ...]  # over catalog.SOURCES


c = catalog  # short alias: the task table below reads as a script
TASKS: tuple[_Task, ...] = (
    _Task(
        "glance",
        (_view(c.HOME, c.CATALOG, c.DOCS, c.TECH_RADAR, c.SETTINGS),),
        (0.60, 0.10, 0.15, 0.05, 0.05, 0.05),
    ),
    _Task(
        "docs",
        (
            _view(c.DOCS, c.HOME),
            _view(*c.DOCS_PAGES, reach=0.92, delay=(15, 90)),
            _do(c.VIEW_DOCUMENTATION, 0.95, (10, 40)),
            _view(*c.DOCS_PAGES, reach=0.55, delay=(60, 420)),
            _do(c.VIEW_DOCUMENTATION, 0.90, (10, 40)),
            _view(*c.DOCS_PAGES, reach=0.35, delay=(60, 420)),
        ),
        (0.35, 0.10, 0.15, 0.20, 0.15, 0.05),
    ),
    _Task(
        "catalog",
        (
            _view(c.CATALOG),
            _do(c.SEARCH_COMPONENTS, 0.70, (10, 60)),
            _view(*c.CATALOG_COMPONENTS, reach=0.85, delay=(10, 120)),
            _view(*c.CATALOG_COMPONENTS, reach=0.45, delay=(30, 300)),
            _view(*c.DOCS_PAGES, reach=0.20, delay=(30, 300)),
        ),
        (0.45, 0.30, 0.10, 0.05, 0.05, 0.05),
    ),
    _Task(
        "create",
        (
            _view(c.CREATE),
            _do(c.START_SERVICE_CREATION, 0.92, (10, 60)),
            _view(c.CREATE_TEMPLATES, reach=0.88, delay=(10, 60)),
            _do(c.TEMPLATE_SELECTED, 0.85, (20, 240)),
            _do(c.SERVICE_CREATED, 0.82, (60, 600)),
            _view(c.CATALOG, reach=0.40, delay=(30, 120)),
        ),
        (0.60, 0.15, 0.10, 0.02, 0.08, 0.05),
    ),
    _Task(
        "deploy",
        (
            _view(c.DEPLOYMENTS),
            _do(c.DEPLOY_APPLICATION, 0.93, (10, 90)),
            _do(c.BUILD_SUCCEEDED, 0.80, (120, 600)),
            _do(c.DEPLOYMENT_COMPLETE, 0.90, (60, 300)),
            _view(c.MONITORING, reach=0.25, delay=(30, 180)),
        ),
        (0.45, 0.15, 0.30, 0.00, 0.02, 0.08),
    ),
    _Task(
        "pipeline",
        (
            _view(c.PIPELINES),
            _do(c.RUN_PIPELINE, 0.90, (10, 90)),
            _view(c.PIPELINES, reach=0.40, delay=(60, 600)),
            _view("/docs/pipelines", reach=0.15, delay=(30, 240)),
        ),
        (0.45, 0.30, 0.15, 0.00, 0.02, 0.08),
    ),
    _Task(
        "monitoring",
        (
            _view(c.MONITORING),
            _do(c.CONFIGURE_MONITORING, 0.85, (20, 180)),
            _view(c.MONITORING_DASHBOARDS, reach=0.60, delay=(20, 180)),
        ),
        (0.50, 0.05, 0.35, 0.02, 0.05, 0.03),
    ),
)
_TASK = {task.name: index for index, task in enumerate(TASKS)}

# Seasonal favour over the window (0 at the start, 1 today): monitoring rises, pipelines fall.
# The ends are chosen so the total weight stays about level, which keeps the other tasks flat.
_TASK_RAMPS: dict[int, tuple[float, float]] = {
    _TASK["monitoring"]: (0.04, 1.0),
    _TASK["pipeline"]: (1.0, 0.15),
}
# In their first two weeks people read and scaffold more, and glance around less.
_ONBOARDING_BOOST: dict[int, float] = {
    _TASK["docs"]: 1.5,
    _TASK["create"]: 2.5,
    _TASK["glance"]: 0.6,
}
_TEAM_BOOST: dict[tuple[str, int], float] = {
    ("platform", _TASK["monitoring"]): 1.8,
    ("data", _TASK["pipeline"]): 1.8,
}
_TEAM_SHARES = (0.16, 0.14, 0.12, 0.14, 0.12, 0.12, 0.10, 0.10)

# The planted anomalies (step 5 of the module docstring). An outage halving the deployments
# would not be flagged: 300 users make 25-35 deployers a weekday, and half of that is within
# the noise of such small counts (docs/forecasting.md#what-the-model-does-not-know).
_OUTAGE_DAYS_AGO = 7
_OUTAGE_EVENTS = (catalog.DEPLOY_APPLICATION, catalog.BUILD_SUCCEEDED, catalog.DEPLOYMENT_COMPLETE)
_INCIDENT_DAYS_AGO = 1
_INCIDENT_RELOADS = 8
_INCIDENT_RELOAD_SECONDS = MINUTE

# A created service is deployed later in a session of its own, this often and this much later.
_DEPLOY_AFTER_CREATE = 0.70
_DEPLOY_DELAY_MEDIAN = 3 * HOUR


@dataclass(frozen=True)
class PlantedAnomaly:
    """A day the population was made unusual on purpose (module docstring, step 5)."""

    kind: str  # "deployment_outage" (deploy events dropped) or "pageview_spike" (page views added)
    day: int  # epoch day (UTC)


@dataclass(frozen=True)
class Population:
    """Columnar events of a synthetic population, sorted by timestamp.

    Event columns (one row per page view or custom event): ``event_user`` (index into
    :attr:`user_ids`), ``event_ts`` (epoch seconds), ``event_name`` (index into
    ``catalog.EVENT_NAMES``; 0 is a page view), ``event_path`` (index into ``catalog.PAGES``),
    ``event_session`` (index into the session columns) and ``event_source`` (index into
    ``catalog.SOURCES``, the session's source). Session columns: ``session_user``,
    ``session_start``, ``session_source``. User columns: ``user_team`` (index into
    ``catalog.TEAMS``) and ``user_archetype`` (index into :data:`ARCHETYPES`).
    """

    seed: int
    now: datetime
    start_ts: int  # UTC midnight opening the window
    end_ts: int  # last second events are generated for (now + horizon)
    user_team: np.ndarray
    user_archetype: np.ndarray
    event_user: np.ndarray
    event_ts: np.ndarray
    event_name: np.ndarray
    event_path: np.ndarray
    event_session: np.ndarray
    event_source: np.ndarray
    session_user: np.ndarray
    session_start: np.ndarray
    session_source: np.ndarray
    planted: tuple[PlantedAnomaly, ...] = ()

    @property
    def n_users(self) -> int:
        return len(self.user_team)

    @property
    def n_sessions(self) -> int:
        return len(self.session_start)

    @property
    def user_ids(self) -> list[str]:
        """Stable user identifiers, ``u-0001`` onwards, shared by every simulated service."""
        return [f"u-{index + 1:04d}" for index in range(self.n_users)]

    def visible_count(self, upto: float) -> int:
        """How many events (a prefix of the columns) have ``timestamp <= upto``."""
        return int(np.searchsorted(self.event_ts, np.floor(upto), side="right"))


def generate_population(
    seed: int = 42,
    *,
    now: datetime,
    n_users: int = 300,
    days: int = 90,
    horizon_days: int = 1,
) -> Population:
    """Generate the population: ``days`` of history before ``now`` plus ``horizon_days`` after.

    Deterministic for a given ``seed`` and ``now`` (an aware datetime; naive means UTC).
    """
    if n_users < len(ARCHETYPES) or days < 1 or horizon_days < 0:
        raise ValueError("need at least one user per archetype, days >= 1 and horizon_days >= 0")
    now_ts = int(_as_utc(now).timestamp())
    today = now_ts // DAY
    start_day = today - days
    end_ts = now_ts + horizon_days * DAY
    n_days = days + horizon_days + 1
    rng = np.random.default_rng(seed)

    archetype = _assign_archetypes(rng, n_users)
    team = rng.choice(len(catalog.TEAMS), size=n_users, p=_TEAM_SHARES).astype(np.int8)
    first_day, last_day, routine_until = _lifecycles(rng, archetype, days, n_days)
    active = _active_days(
        rng, archetype, first_day, last_day, routine_until, start_day, days, n_days
    )

    sessions = _plan_sessions(rng, active, archetype, team, first_day, start_day, days)
    events = _expand_tasks(rng, sessions)
    events, planted = _plant_anomalies(sessions, events, today)
    population = _assemble(seed, _as_utc(now), start_day * DAY, end_ts, team, archetype, sessions, events)
    return dataclasses.replace(population, planted=planted)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _assign_archetypes(rng: np.random.Generator, n_users: int) -> np.ndarray:
    """Exact shares (rounded), every archetype present, in a shuffled order."""
    shares = np.array([_ARCHETYPES[a].share for a in range(len(ARCHETYPES))])
    counts = np.maximum(1, np.floor(shares / shares.sum() * n_users).astype(int))
    counts[CASUAL] += n_users - counts.sum()
    return rng.permutation(np.repeat(np.arange(len(ARCHETYPES), dtype=np.int8), counts))


def _lifecycles(
    rng: np.random.Generator, archetype: np.ndarray, days: int, n_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, in window day indices (``days`` is today): first day, last day, and the day
    their routine ends (slipping users; ``n_days`` for everyone else)."""
    n = len(archetype)
    first = np.zeros(n, dtype=np.int64)
    last = np.full(n, n_days - 1, dtype=np.int64)
    routine_until = np.full(n, n_days, dtype=np.int64)

    established = np.isin(archetype, (POWER, CORE, CASUAL))
    late = established & (rng.random(n) < _LATE_JOINER_SHARE)
    # Joining gets likelier over time (density rising linearly), offsetting the churn that
    # accumulates over the window, so overall activity stays about level.
    join_span = max(1, days - _LATE_JOIN_SETTLED_DAYS - 1)
    first[late] = 1 + (join_span * np.sqrt(rng.random(late.sum()))).astype(np.int64)

    newcomer = archetype == NEWCOMER
    first[newcomer] = days - rng.integers(1, _ONBOARDING_DAYS, size=newcomer.sum())

    slipping = archetype == SLIPPING
    low, high = _SLIPPING_SINCE_DAYS
    routine_until[slipping] = days - rng.integers(low, high + 1, size=slipping.sum())

    for kind, gone_min, gone_max in ((DORMANT, 29, 56), (CHURNED, 57, 85)):
        chosen = archetype == kind
        gone = rng.integers(gone_min, gone_max + 1, size=chosen.sum())
        last[chosen] = np.maximum(1, days - gone)
    return first, last, routine_until


def _active_days(
    rng: np.random.Generator,
    archetype: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    routine_until: np.ndarray,
    start_day: int,
    days: int,
    n_days: int,
) -> np.ndarray:
    """Boolean users x days matrix of days with at least one session."""
    kinds = [_ARCHETYPES[a] for a in range(len(ARCHETYPES))]
    attendance, other_weekday, weekend_visit = (
        np.array([getattr(kind, name) for kind in kinds])[archetype][:, None]
        for name in ("attendance", "other_weekday", "weekend")
    )
    habits = np.array([kind.habitual_weekdays for kind in kinds])[archetype]
    habitual = _pick_distinct(rng, 5, rng.integers(habits[:, 0], habits[:, 1] + 1))  # Mon-Fri

    day = np.arange(n_days)
    weekday = (start_day + day + 3) % 7  # Monday is 0; epoch day 0 was a Thursday
    weekend = weekday >= 5
    on_routine = habitual[:, np.minimum(weekday, 4)] & ~weekend
    p = np.where(on_routine, attendance, np.where(weekend, weekend_visit, other_weekday))
    alive = (
        (day >= first[:, None]) & (day <= last[:, None]) & (day < routine_until[:, None])
    )
    active = alive & (rng.random(p.shape) < p)

    # Since their routine ended, slipping users drop in on a few of the last _RECENT_DAYS days.
    slipping = np.flatnonzero(routine_until < n_days)
    low, high = _SLIPPING_RETURN_VISITS
    visits = rng.integers(low, high + 1, size=len(slipping))
    chosen_user, chosen_day = np.nonzero(_pick_distinct(rng, _RECENT_DAYS, visits))
    active[slipping[chosen_user], days - _RECENT_DAYS + chosen_day] = True

    # First and last days are facts of the lifecycle, so they must be active days.
    rows = np.arange(len(archetype))
    active[rows, first] = True
    ends = last < n_days - 1
    active[rows[ends], last[ends]] = True
    return active


def _pick_distinct(rng: np.random.Generator, n_choices: int, counts: np.ndarray) -> np.ndarray:
    """Boolean ``len(counts)`` x ``n_choices``: row i marks ``counts[i]`` distinct choices, drawn
    uniformly (the first ``counts[i]`` of a random ranking)."""
    rank = rng.random((len(counts), n_choices)).argsort(axis=1).argsort(axis=1)
    return rank < counts[:, None]


def _days_since_previous_visit(active: np.ndarray) -> np.ndarray:
    """Users x days: days since the user's previous active day (over ``n_days`` if none)."""
    n_users, n_days = active.shape
    day = np.arange(n_days)
    seen = np.maximum.accumulate(np.where(active, day, -n_days), axis=1)
    previous = np.concatenate([np.full((n_users, 1), -n_days), seen[:, :-1]], axis=1)
    return day - previous


@dataclass(frozen=True)
class _Sessions:
    """Planned sessions; ``parent`` is the create session a follow-up deploy belongs to, or -1."""

    user: np.ndarray
    start: np.ndarray
    task: np.ndarray
    source: np.ndarray
    login: np.ndarray  # the session opens with a login event
    parent: np.ndarray


@dataclass(frozen=True)
class _Events:
    session: np.ndarray
    ts: np.ndarray
    name: np.ndarray
    path: np.ndarray


def _plan_sessions(
    rng: np.random.Generator,
    active: np.ndarray,
    archetype: np.ndarray,
    team: np.ndarray,
    first: np.ndarray,
    start_day: int,
    days: int,
) -> _Sessions:
    users, day = np.nonzero(active)
    away = _days_since_previous_visit(active)[users, day]
    fresh_login = (away > 1) | (rng.random(len(users)) < _LOGIN_PROBABILITY_NEXT_DAY)
    extra = np.array([_ARCHETYPES[a].extra_sessions for a in range(len(ARCHETYPES))])
    per_day = np.minimum(1 + rng.poisson(extra[archetype[users]]), _MAX_SESSIONS_PER_DAY)
    user = np.repeat(users, per_day)
    day = np.repeat(day, per_day)
    k = np.repeat(per_day, per_day)
    slot = np.arange(len(user)) - np.repeat(np.cumsum(per_day) - per_day, per_day)

    # Slot j of k splits the person's working day evenly; starting early enough in the slot
    # keeps consecutive sessions at least _SESSION_SPACING apart. The working day itself shifts
    # by up to an hour from person-day to person-day.
    slot_length = _WORKDAY_LENGTH // k
    offset = (rng.random(len(user)) * (slot_length - _SESSION_SPACING)).astype(np.int64)
    day_shift = np.repeat(rng.integers(-HOUR, HOUR, size=len(users)), per_day)
    start = (start_day + day) * DAY + _WORKDAY_START + day_shift + slot * slot_length + offset

    joined_in_window = first[user] > 0
    onboarding = joined_in_window & (day - first[user] < _ONBOARDING_DAYS)
    task = _draw_tasks(rng, user, day / days, archetype, team, onboarding)
    very_first = joined_in_window & (day == first[user]) & (slot == 0)
    task[very_first] = _TASK["docs"]
    login = ((slot == 0) & np.repeat(fresh_login, per_day)) | very_first
    source = _draw_rows(rng, np.array([t.source_weights for t in TASKS])[task])
    planned = _Sessions(user, start, task, source, login, np.full(len(user), -1))
    return _with_follow_up_deploys(rng, planned)


def _draw_tasks(
    rng: np.random.Generator,
    user: np.ndarray,
    progress: np.ndarray,
    archetype: np.ndarray,
    team: np.ndarray,
    onboarding: np.ndarray,
) -> np.ndarray:
    """Task of each session from user preference, team, season and onboarding."""
    base = np.array([_ARCHETYPES[a].task_weights for a in range(len(ARCHETYPES))])
    preference = base[archetype] * rng.lognormal(0.0, 0.5, size=(len(archetype), len(TASKS)))
    for (team_name, task_index), boost in _TEAM_BOOST.items():
        preference[team == catalog.TEAMS.index(team_name), task_index] *= boost
    focused = np.array([_ARCHETYPES[a].focused for a in range(len(ARCHETYPES))])[archetype]
    preference[focused] = _focus(preference[focused])

    weights = preference[user]
    season = np.clip(progress, 0.0, 1.0)
    for task_index, (begin, end) in _TASK_RAMPS.items():
        weights[:, task_index] *= begin + (end - begin) * season
    for task_index, boost in _ONBOARDING_BOOST.items():
        weights[onboarding, task_index] *= boost
    return _draw_rows(rng, weights)


def _focus(preference: np.ndarray) -> np.ndarray:
    """Keep, per user, the feature tasks they like best that touch at most _FOCUS_FEATURES
    features, and drop the others; tasks touching no feature are left alone."""
    touches = _task_features()
    feature_tasks = np.flatnonzero(touches.any(axis=1))
    # Every subset of the feature tasks (rows), and those within the feature budget.
    subsets = np.array(list(itertools.product((False, True), repeat=len(feature_tasks))))
    touched = (subsets[:, :, None] & touches[feature_tasks][None, :, :]).any(axis=1)
    allowed = subsets[touched.sum(axis=1) <= _FOCUS_FEATURES]
    best = allowed[np.argmax(preference[:, feature_tasks] @ allowed.T, axis=1)]
    focused = preference.copy()
    focused[:, feature_tasks] *= best
    return focused


def _task_features() -> np.ndarray:
    """Boolean tasks x feature goals: the features whose events a task can produce.

    Creating a service counts as deploying too: a created service is deployed in a follow-up
    session (see :func:`_with_follow_up_deploys`).
    """
    events = [{step.event for step in task.steps} for task in TASKS]
    events[_TASK["create"]] |= events[_TASK["deploy"]]
    return np.array([[event in produced for event in catalog.FEATURE_GOALS.values()]
                     for produced in events])


def _draw_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (rows x categories) weight matrix."""
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cumulative[:, -1]
    return (cumulative < u[:, None]).sum(axis=1).astype(np.int64)


def _with_follow_up_deploys(rng: np.random.Generator, planned: _Sessions) -> _Sessions:
    """Add a deploy session after some create sessions, later the same day or a day or two on.

    Whether the create session actually reaches ``service_created`` is only known once tasks are
    expanded; :func:`_expand_tasks` drops the follow-ups of services never created.
    """
    parents = np.flatnonzero(planned.task == _TASK["create"])
    parents = parents[rng.random(len(parents)) < _DEPLOY_AFTER_CREATE]
    n = len(parents)
    delay = np.clip(rng.lognormal(np.log(_DEPLOY_DELAY_MEDIAN), 1.0, size=n), 20 * MINUTE, 4 * DAY)
    start = planned.start[parents] + delay.astype(np.int64)
    # Outside working hours, the deploy waits for the next morning.
    second_of_day = start % DAY
    early = second_of_day < _WORKDAY_START
    late = second_of_day >= _WORKDAY_START + _WORKDAY_LENGTH
    morning = (start // DAY + late) * DAY + 8 * HOUR + rng.integers(0, 2 * HOUR, size=n)
    start = np.where(early | late, morning, start)
    return _Sessions(
        user=np.concatenate([planned.user, planned.user[parents]]),
        start=np.concatenate([planned.start, start]),
        task=np.concatenate([planned.task, np.full(n, _TASK["deploy"])]),
        source=np.concatenate([planned.source, np.full(n, catalog.SOURCES.index(catalog.DIRECT))]),
        login=np.concatenate([planned.login, np.zeros(n, dtype=bool)]),
        parent=np.concatenate([planned.parent, parents]),
    )


def _expand_tasks(rng: np.random.Generator, sessions: _Sessions) -> _Events:
    """Turn each session's task into timed page views and custom events.

    Steps are at least 10 seconds apart and the optional login comes 1-8 seconds after the
    landing page view, so timestamps within a session are distinct and ordered.
    """
    name_code = {name: code for code, name in enumerate(catalog.EVENT_NAMES)}
    path_code = {path: code for code, path in enumerate(catalog.PAGES)}
    chunks: list[tuple[np.ndarray, ...]] = []
    created = np.zeros(len(sessions.user), dtype=bool)

    for task_index, task in enumerate(TASKS):
        idx = np.flatnonzero(sessions.task == task_index)
        n, n_steps = len(idx), len(task.steps)
        reach = np.array([step.reach for step in task.steps])
        reached = np.cumprod(rng.random((n, n_steps)) < reach, axis=1).astype(bool)
        low = np.array([step.delay[0] for step in task.steps])
        high = np.array([step.delay[1] for step in task.steps])
        delays = rng.integers(low, high + 1, size=(n, n_steps))
        at = sessions.start[idx, None] + np.cumsum(delays, axis=1)

        page = np.zeros(n, dtype=np.int64)
        for j, step in enumerate(task.steps):
            if step.pages:
                choices = np.array([path_code[p] for p in step.pages])
                page = choices[rng.integers(0, len(choices), size=n)]
                name = np.zeros(n, dtype=np.int64)
            else:
                name = np.full(n, name_code[step.event])
            done = reached[:, j]
            chunks.append((idx[done], at[done, j], name[done], page[done]))
            if step.event == catalog.SERVICE_CREATED:
                created[idx[done]] = True
            if j == 0:
                logs_in = sessions.login[idx]
                chunks.append(
                    (
                        idx[logs_in],
                        at[logs_in, 0] + rng.integers(1, 9, size=logs_in.sum()),
                        np.full(logs_in.sum(), name_code[catalog.USER_LOGIN]),
                        page[logs_in],
                    )
                )

    events = _Events(*(np.concatenate(column) for column in zip(*chunks)))
    orphan = (sessions.parent >= 0) & ~created[np.maximum(sessions.parent, 0)]
    keep = ~orphan[events.session]
    return _Events(events.session[keep], events.ts[keep], events.name[keep], events.path[keep])


def _plant_anomalies(sessions: _Sessions, events: _Events, today: int) -> tuple[_Events, tuple[PlantedAnomaly, ...]]:
    """The deployment outage and the incident of the module docstring (step 5)."""
    outage = today - _OUTAGE_DAYS_AGO
    while (outage + 3) % 7 >= 5:  # a weekday (epoch day 0 was a Thursday)
        outage -= 1
    incident = today - _INCIDENT_DAYS_AGO
    session_day = sessions.start // DAY

    failed = (session_day == outage) & (sessions.task == _TASK["deploy"])
    deploy_codes = [catalog.EVENT_NAMES.index(name) for name in _OUTAGE_EVENTS]
    kept = ~(failed[events.session] & np.isin(events.name, deploy_codes))

    # Each session of the incident day ends with reloads of the monitoring dashboards.
    last_event = np.full(len(sessions.start), -1, dtype=np.int64)
    np.maximum.at(last_event, events.session[kept], events.ts[kept])
    reloading = np.flatnonzero((session_day == incident) & (last_event >= 0))
    session = np.repeat(reloading, _INCIDENT_RELOADS)
    offset = np.tile(np.arange(1, _INCIDENT_RELOADS + 1), len(reloading)) * _INCIDENT_RELOAD_SECONDS
    reloads = _Events(session, last_event[session] + offset, np.zeros(len(session), dtype=np.int64),
                      np.full(len(session), catalog.PAGES.index(catalog.MONITORING_DASHBOARDS)))
    planted = _Events(*(np.concatenate((getattr(events, field.name)[kept], getattr(reloads, field.name)))
                        for field in dataclasses.fields(_Events)))
    return planted, (PlantedAnomaly("deployment_outage", outage), PlantedAnomaly("pageview_spike", incident))


def _assemble(
    seed: int,
    now: datetime,
    start_ts: int,
    end_ts: int,
    team: np.ndarray,
    archetype: np.ndarray,
    planned: _Sessions,
    events: _Events,
) -> Population:
    """Cut at ``end_ts``, form sessions the way Plausible does, sort everything by time.

    Planned sessions are already well apart, but a follow-up deploy can land close to another
    session of the same person; cutting on 30 idle minutes (or UTC midnight, when Plausible's
    visitor id changes) makes every session a session in Plausible's sense by construction.
    A session keeps the traffic source of its first planned session.
    """
    in_time = events.ts <= end_ts
    user = planned.user[events.session[in_time]]
    by_person = np.lexsort((events.ts[in_time], user))
    user = user[by_person]
    ts = events.ts[in_time][by_person]
    source = planned.source[events.session[in_time][by_person]]
    name = events.name[in_time][by_person]
    path = events.path[in_time][by_person]

    opens = np.ones(len(ts), dtype=bool)
    opens[1:] = (
        (user[1:] != user[:-1])
        | (ts[1:] - ts[:-1] > _SESSION_TIMEOUT)
        | (ts[1:] // DAY != ts[:-1] // DAY)
    )
    first_event = np.flatnonzero(opens)
    by_start = np.lexsort((user[first_event], ts[first_event]))
    session_id = np.empty(len(first_event), dtype=np.int64)
    session_id[by_start] = np.arange(len(first_event))
    session = session_id[np.cumsum(opens) - 1]

    order = np.lexsort((session, ts))
    session_user = user[first_event][by_start].astype(np.int32)
    session_source = source[first_event][by_start].astype(np.int8)
    return Population(
        seed=seed,
        now=now,
        start_ts=start_ts,
        end_ts=end_ts,
        user_team=team,
        user_archetype=archetype,
        event_user=user[order].astype(np.int32),
        event_ts=ts[order].astype(np.int64),
        event_name=name[order].astype(np.int16),
        event_path=path[order].astype(np.int16),
        event_session=session[order].astype(np.int32),
        event_source=session_source[session[order]],
        session_user=session_user,
        session_start=ts[first_event][by_start].astype(np.int64),
        session_source=session_source,
    )
