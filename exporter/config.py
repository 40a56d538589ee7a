"""The service's configuration: declared here, loaded from YAML, overridden by the environment.

``config/analytics.yaml`` documents every key with the same defaults as declared below. The
environment variables keep the names of the original service (docs/configuration.md#environment-variables).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .analysis.experiments.event_metrics import ExperimentMetricsSettings
from .analysis.funnels import FunnelDefinition, FunnelStep
from .analysis.segments import SegmentThresholds
from .identifiers import quote_identifier
from .platform_names import DEFAULT_FUNNELS as DOCUMENTED_FUNNELS
from .platform_names import FEATURE_GOALS, DocumentedFunnel
from .reports.config import ReportConfig, SmtpConfig, check_reports
from .secrets import Secret
from .timeranges import TimeRange
from .typed_mapping import MappingError, build, to_plain

# libyaml's safe loader when PyYAML was built with it: the same documents, parsed 15 times faster.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_CONFIG_PATH = Path("config/analytics.yaml")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key path."""


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive (got {value})")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8000
    api_token: Secret | None = None
    cors_allowed_origins: tuple[str, ...] = ()
    request_timeout_seconds: float = 25.0
    # POST /api/v1/metrics/refresh costs every upstream a full cycle of requests (Plausible's
    # budget is 600/hour): at most one forced refresh per this many seconds.
    min_forced_refresh_seconds: float = 30.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Open GET /api/v1/stream connections at most; a handshake beyond them is answered 503.
    max_stream_clients: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535 (got {self.port})")
        _positive(request_timeout_seconds=self.request_timeout_seconds, max_stream_clients=self.max_stream_clients)


@dataclass(frozen=True)
class CacheConfig:
    ttl_seconds: float = 300.0

    def __post_init__(self) -> None:
        _positive(ttl_seconds=self.ttl_seconds)


@dataclass(frozen=True)
class MetricsConfig:
    usage_windows: tuple[str, ...] = ("1d", "7d", "30d")
    feature_windows: tuple[str, ...] = ("30d",)
    feedback_windows: tuple[str, ...] = ("30d",)
    funnel_windows: tuple[str, ...] = ("30d",)
    # Feedback categories are free text: the label keeps the N largest and folds the rest into "other".
    feedback_top_categories: int = 8
    default_scrape_timeout_seconds: float = 10.0
    # Dimensions (their names) whose breakdown series /metrics publishes (analytics_breakdown_*).
    breakdowns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate_windows("usage_windows", self.usage_windows)
        _validate_windows("feature_windows", self.feature_windows)
        _validate_windows("feedback_windows", self.feedback_windows)
        _validate_windows("funnel_windows", self.funnel_windows)
        if self.feedback_top_categories < 0:
            raise ValueError(f"feedback_top_categories must be 0 or more (got {self.feedback_top_categories})")
        _positive(default_scrape_timeout_seconds=self.default_scrape_timeout_seconds)

    @property
    def usage_ranges(self) -> tuple[TimeRange, ...]:
        return tuple(TimeRange.parse(w) for w in self.usage_windows)

    @property
    def feature_ranges(self) -> tuple[TimeRange, ...]:
        return tuple(TimeRange.parse(w) for w in self.feature_windows)

    @property
    def feedback_ranges(self) -> tuple[TimeRange, ...]:
        return tuple(TimeRange.parse(w) for w in self.feedback_windows)

    @property
    def funnel_ranges(self) -> tuple[TimeRange, ...]:
        return tuple(TimeRange.parse(w) for w in self.funnel_windows)


@dataclass(frozen=True)
class HttpSourceConfig:
    """What every HTTP upstream shares: where it is, how long to wait, how hard to push."""

    enabled: bool = True
    url: str | None = None
    timeout_seconds: float = 8.0
    max_concurrency: int = 4
    max_retries: int = 2
    max_response_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        # Checked first, so no message below repeats it: a URL is printed by check-config and is no
        # secret, so it must not carry one; the sources authenticate with their own secret settings.
        if self.url and urlsplit(self.url).password is not None:
            raise ValueError("url must not hold a password: URLs are printed (check-config) and not kept secret")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
        _positive(timeout_seconds=self.timeout_seconds, max_concurrency=self.max_concurrency,
                  max_response_bytes=self.max_response_bytes)
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more (got {self.max_retries})")

    def missing_settings(self) -> list[str]:
        """Settings without which the source is disabled (empty when it can run)."""
        return [] if self.url else ["url"]


@dataclass(frozen=True)
class PlausibleConfig(HttpSourceConfig):
    url: str | None = "http://plausible.fawkes.svc:8000"
    api_key: Secret | None = None
    site_id: str | None = None
    api_version: Literal["auto", "v1", "v2"] = "auto"
    timezone: str = "UTC"
    stats_start_date: str = "2019-01-01"
    hourly_request_budget: int = 600

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA timezone name") from None

    def missing_settings(self) -> list[str]:
        return super().missing_settings() + ([] if self.site_id else ["site_id"])


@dataclass(frozen=True)
class ExperimentationConfig(HttpSourceConfig):
    url: str | None = "http://experimentation.fawkes.svc:8000"


@dataclass(frozen=True)
class FeedbackConfig(HttpSourceConfig):
    url: str | None = "http://feedback-service.fawkes.svc:8000"
    admin_token: Secret | None = None

    def missing_settings(self) -> list[str]:
        # Every read of the Feedback Service needs the admin token; without it the source cannot run.
        return super().missing_settings() + ([] if self.admin_token else ["admin_token"])


@dataclass(frozen=True)
class SourcesConfig:
    plausible: PlausibleConfig = field(default_factory=PlausibleConfig)
    experimentation: ExperimentationConfig = field(default_factory=ExperimentationConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)


@dataclass(frozen=True)
class EventColumnsConfig:
    """The columns of a ClickHouse events table holding the user id, the event name and the time."""

    user_id: str = "user_id"
    event: str = "event"
    timestamp: str = "timestamp"  # DateTime or DateTime64
    properties: str = "properties"  # Map(String, String): read only for dimensions and experiment exposures

    def __post_init__(self) -> None:
        for column in (self.user_id, self.event, self.timestamp, self.properties):
            quote_identifier(column, nested=True)  # names only: they are written into SQL


@dataclass(frozen=True)
class EventsConfig:
    """The identified events source (docs/upstreams.md#identified-events): a file, or a ClickHouse table."""

    enabled: bool = True
    kind: Literal["file", "clickhouse"] = "file"
    path: str | None = None  # file
    url: str | None = None  # clickhouse: its HTTP interface
    database: str = "default"
    table: str | None = None  # None: "events", or "events_v2" with the Plausible preset
    user: str = "default"
    password: Secret | None = None
    columns: EventColumnsConfig = field(default_factory=EventColumnsConfig)
    preset: Literal["plausible_events_v2"] | None = None
    user_id_property: str | None = None  # the preset's custom property holding a stable user id
    query_timeout_seconds: float = 8.0

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
        if self.url and urlsplit(self.url).password is not None:  # it would show in /health
            raise ValueError("url must not hold a password: set events.user and events.password (or password_file)")
        _positive(query_timeout_seconds=self.query_timeout_seconds)
        quote_identifier(self.database)
        quote_identifier(self.table_name)
        other_kind = {"file": ("url", self.url), "clickhouse": ("path", self.path)}[self.kind]
        if other_kind[1]:
            raise ValueError(f"{other_kind[0]} is set, but kind is {self.kind}; set one of path (kind: file) "
                             f"or url (kind: clickhouse)")
        if self.preset is not None and self.kind != "clickhouse":
            raise ValueError("preset needs kind: clickhouse")
        if self.preset is not None and not self.user_id_property:
            raise ValueError(f"preset {self.preset} needs user_id_property: the custom property that "
                             "carries a stable user id")
        if self.preset is None and self.user_id_property is not None:
            raise ValueError("user_id_property is only used with preset: plausible_events_v2")
        if self.preset is not None and self.columns != EventColumnsConfig():
            raise ValueError(f"columns cannot be set with preset {self.preset}, which defines them")

    @property
    def table_name(self) -> str:
        return self.table or ("events_v2" if self.preset == "plausible_events_v2" else "events")

    def missing_settings(self) -> list[str]:
        if self.kind == "clickhouse":
            return [] if self.url else ["url"]
        return [] if self.path else ["path"]


@dataclass(frozen=True)
class FeatureConfig:
    """A product feature: its display name and how it is observed.

    ``goal`` is a Plausible goal's display name; ``event`` an event name in the identified events
    source, which gives exact per-person counts and takes precedence once that source is used.
    """

    name: str
    goal: str | None = None
    event: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a feature needs a non-empty name")
        if not (self.goal or self.event):
            raise ValueError(f"feature {self.name!r} needs a goal (Plausible) or an event (events source)")


# The platform's documented feature goals, each with its tracker event name
# (docs/upstreams.md#platform-goals-and-events).
DEFAULT_FEATURES = tuple(FeatureConfig(name=goal, goal=goal, event=event) for goal, event in FEATURE_GOALS.items())


@dataclass(frozen=True)
class FunnelStepConfig:
    """One funnel step: a display name, the event that marks it, and optionally a Plausible goal.

    The goal is only used without an events source, when funnels fall back to Plausible's
    aggregate goal counts (docs/methods.md#aggregate-goals-fallback); that fallback needs a goal on every step.
    """

    name: str
    event: str
    goal: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a funnel step needs a non-empty name")
        if not self.event.strip():
            raise ValueError(f"funnel step {self.name!r} needs a non-empty event")


# A conversion window longer than a year says nothing a 90-day range could show, and keeps the
# analysis' 32-bit time keys far from overflowing.
MAX_FUNNEL_WINDOW_SECONDS = 366 * 86_400


@dataclass(frozen=True)
class FunnelConfig:
    """An ordered funnel: steps in order, the conversion window from step 1, optional step windows."""

    name: str
    steps: tuple[FunnelStepConfig, ...]
    window_seconds: int
    description: str = ""
    step_windows: tuple[int | None, ...] | None = None  # seconds between consecutive steps; None: no limit

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a funnel needs a non-empty name")
        names = [step.name for step in self.steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:  # step names are metric label values: they must tell the steps apart
            raise ValueError(f"funnel {self.name!r}: the step name {duplicates[0]!r} is used more than once")
        if self.window_seconds > MAX_FUNNEL_WINDOW_SECONDS:
            raise ValueError(f"funnel {self.name!r}: window_seconds must be at most {MAX_FUNNEL_WINDOW_SECONDS} "
                             f"(366 days; got {self.window_seconds})")
        self.definition()  # the analysis' own checks (window, step windows) apply here too

    def definition(self) -> FunnelDefinition:
        """The funnel as the ordered-events analysis takes it."""
        return FunnelDefinition(self.name, self.description, tuple(FunnelStep(s.name, s.event) for s in self.steps),
                                self.window_seconds, self.step_windows)

    @property
    def goals(self) -> tuple[str, ...] | None:
        """The Plausible goal of every step, or None when a step has none."""
        goals = tuple(step.goal for step in self.steps)
        return None if None in goals else goals


def _catalog_funnel(funnel: DocumentedFunnel) -> FunnelConfig:
    # A tracker event is "{category}.{action}.{label}"; the label names the step.
    steps = tuple(FunnelStepConfig(name=event.rsplit(".", 1)[-1], event=event) for event in funnel.steps)
    return FunnelConfig(name=funnel.name, description=funnel.description, steps=steps,
                        window_seconds=funnel.window_seconds)


# onboarding (14 d), deployment (1 d) and service_creation (7 d) over the platform's event names.
DEFAULT_FUNNELS = tuple(_catalog_funnel(funnel) for funnel in DOCUMENTED_FUNNELS)


@dataclass(frozen=True)
class SegmentsConfig:
    """Behavioural segments (docs/methods.md#segments-and-engagement): rule thresholds and what counts as activity."""

    thresholds: SegmentThresholds = field(default_factory=SegmentThresholds)
    # Events that make a day active (and count a user as active in usage); None: every event.
    meaningful_events: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DimensionConfig:
    """A user attribute filters and breakdowns may use: a user's value is the event property's on
    the user's latest event carrying it (docs/api.md#filters-and-breakdowns)."""

    name: str  # as in filter=<name>:<value> and breakdown=<name>
    property: str  # the event property holding it

    def __post_init__(self) -> None:
        if not self.name.strip() or ":" in self.name:
            raise ValueError(f"a dimension needs a name without ':' (got {self.name!r})")
        if not self.property.strip():
            raise ValueError(f"dimension {self.name!r} needs a property")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    features: tuple[FeatureConfig, ...] = DEFAULT_FEATURES
    funnels: tuple[FunnelConfig, ...] = DEFAULT_FUNNELS
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    dimensions: tuple[DimensionConfig, ...] = ()
    max_breakdown_groups: int = 20
    reports: tuple[ReportConfig, ...] = ()  # scheduled report emails (docs/reports.md#scheduled-reports)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    # Experiments measured on the identified events (docs/experiment-metrics.md); None: not measured.
    experiment_metrics: ExperimentMetricsSettings | None = None

    def __post_init__(self) -> None:
        # A ClickHouse query that outlasts a scrape could only ever serve the next one.
        if self.events.kind == "clickhouse" and \
                self.events.query_timeout_seconds >= self.metrics.default_scrape_timeout_seconds:
            scrape = self.metrics.default_scrape_timeout_seconds
            raise ValueError(f"events.query_timeout_seconds ({self.events.query_timeout_seconds:g}) must be below "
                             f"metrics.default_scrape_timeout_seconds ({scrape:g})")
        if self.max_breakdown_groups < 1:
            raise ValueError(f"max_breakdown_groups must be 1 or more (got {self.max_breakdown_groups})")
        unknown = [name for name in self.metrics.breakdowns if name not in {d.name for d in self.dimensions}]
        if unknown:
            configured = ", ".join(d.name for d in self.dimensions) or "none"
            raise ValueError(f"metrics.breakdowns: {unknown[0]!r} is not a configured dimension "
                             f"(dimensions: {configured})")
        if self.experiment_metrics is not None and self.events.preset is not None:
            raise ValueError(f"experiment_metrics: the exposures' experiment and variant are read from the events "
                             f"table's properties map (events.columns.properties), which preset {self.events.preset} "
                             "does not have")
        named = (("features", self.features), ("funnels", self.funnels), ("dimensions", self.dimensions))
        for section, items in named:
            names = [item.name for item in items]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{section}: the name {duplicates[0]!r} is used more than once")
        check_reports(self.reports, self.smtp)

    def funnel(self, name: str) -> FunnelConfig | None:
        """The configured funnel called ``name``, if any."""
        return next((funnel for funnel in self.funnels if funnel.name == name), None)


# Environment variable -> key path. ``*_FILE`` variants of secrets map to ``<key>_file``.
ENVIRONMENT = {
    "PLAUSIBLE_URL": "sources.plausible.url",
    "PLAUSIBLE_API_KEY": "sources.plausible.api_key",
    "PLAUSIBLE_API_KEY_FILE": "sources.plausible.api_key_file",
    "PLAUSIBLE_SITE_ID": "sources.plausible.site_id",
    "EXPERIMENTATION_URL": "sources.experimentation.url",
    "FEEDBACK_URL": "sources.feedback.url",
    "FEEDBACK_ADMIN_TOKEN": "sources.feedback.admin_token",
    "FEEDBACK_ADMIN_TOKEN_FILE": "sources.feedback.admin_token_file",
    "EVENTS_PATH": "events.path",
    "REFRESH_INTERVAL": "cache.ttl_seconds",
    "CORS_ALLOWED_ORIGINS": "server.cors_allowed_origins",
    "API_TOKEN": "server.api_token",
    "API_TOKEN_FILE": "server.api_token_file",
    "SMTP_PASSWORD": "smtp.password",
    "SMTP_PASSWORD_FILE": "smtp.password_file",
}

# Environment variable that names each configurable setting, for messages ("set PLAUSIBLE_URL").
ENVIRONMENT_FOR_KEY = {path: name for name, path in ENVIRONMENT.items() if not name.endswith("_FILE")}


def config_path(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> tuple[Path, bool]:
    """The file to read and whether the user chose it (a chosen file must exist)."""
    chosen = explicit or environ.get("ANALYTICS_CONFIG")
    return (Path(chosen), True) if chosen else (DEFAULT_CONFIG_PATH, False)


def load_config(explicit_path: str | None = None, environ: Mapping[str, str] = os.environ,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the YAML file, apply environment variables and ``overrides`` (key path -> value)."""
    path, chosen = config_path(explicit_path, environ)
    raw = _read_yaml(path, must_exist=chosen)
    for name, key_path in ENVIRONMENT.items():
        if environ.get(name, "") != "":
            _set_path(raw, key_path, environ[name])
            if key_path.endswith("_file"):  # the file replaces an inline secret from YAML
                _set_path(raw, key_path.removesuffix("_file"), None)
    for key_path, value in (overrides or {}).items():
        _set_path(raw, key_path, value)
    try:
        return build(Config, raw)
    except MappingError as error:
        raise ConfigError(f"{path}: {error}") from None


def missing_files(config: Config) -> list[str]:
    """Files the configuration names that do not exist, each with its key (what check-config
    refuses; ``serve`` reports the same as the source being down, since a file may yet appear)."""
    events = config.events
    if events.enabled and events.kind == "file" and events.path and not Path(events.path).exists():
        return [f"events.path: {events.path} does not exist"]
    return []


def effective_config(config: Config) -> dict[str, Any]:
    """The configuration as plain data with every secret masked."""
    return to_plain(config)


def _read_yaml(path: Path, must_exist: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"{path}: configuration file not found") from None
        return {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read configuration file: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint on one line, with where it is (its full text quotes the file over several)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return problem if mark is None else f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def _set_path(raw: dict[str, Any], key_path: str, value: Any) -> None:
    *parents, leaf = key_path.split(".")
    node = raw
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def _validate_windows(name: str, windows: tuple[str, ...]) -> None:
    valid = ["1d", *TimeRange.names()]
    for window in windows:
        if window not in valid:
            raise ValueError(f"{name}: {window!r} is not one of {', '.join(valid)}")
    if not windows:
        raise ValueError(f"{name} must name at least one window")
