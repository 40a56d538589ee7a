"""The demo platform as data: portal pages, traffic sources, teams, event names, goals, funnels.

This module is the single source of truth for every name the demo uses. The synthetic population
draws from it, the simulated Plausible configures its goals from it, and the service's default
feature and funnel configuration imports it, so a renamed event cannot silently break a chart.

Event names follow the platform tracker's ``{category}.{action}.{label}`` convention
(upstreams.md §1.4).
"""

from __future__ import annotations

from dataclasses import dataclass

# Plausible's name for a page view; every other event name is a custom event.
PAGEVIEW = "pageview"

# Pages of the Backstage-like developer portal.
HOME = "/"
CATALOG = "/catalog"
CATALOG_COMPONENTS = (
    "/catalog/payments-api",
    "/catalog/checkout-web",
    "/catalog/identity-service",
    "/catalog/search-indexer",
    "/catalog/notification-worker",
)
DOCS = "/docs"
DOCS_PAGES = (
    "/docs/getting-started",
    "/docs/golden-paths",
    "/docs/deployments",
    "/docs/observability",
    "/docs/pipelines",
    "/docs/faq",
)
CREATE = "/create"
CREATE_TEMPLATES = "/create/templates"
DEPLOYMENTS = "/deployments"
PIPELINES = "/pipelines"
MONITORING = "/monitoring"
MONITORING_DASHBOARDS = "/monitoring/dashboards"
TECH_RADAR = "/tech-radar"
SETTINGS = "/settings"

PAGES: tuple[str, ...] = (
    HOME,
    CATALOG,
    *CATALOG_COMPONENTS,
    DOCS,
    *DOCS_PAGES,
    CREATE,
    CREATE_TEMPLATES,
    DEPLOYMENTS,
    PIPELINES,
    MONITORING,
    MONITORING_DASHBOARDS,
    TECH_RADAR,
    SETTINGS,
)

# Traffic sources as Plausible names them ("Direct / None" is its label for no referrer).
DIRECT = "Direct / None"
SOURCES: tuple[str, ...] = (DIRECT, "GitHub", "Slack", "Google", "Confluence", "Jira")

TEAMS: tuple[str, ...] = (
    "payments",
    "checkout",
    "identity",
    "platform",
    "data",
    "mobile",
    "search",
    "growth",
)

# Custom events of the platform's event tracker.
USER_LOGIN = "authentication.complete.user_login"
VIEW_DOCUMENTATION = "documentation.view.view_documentation"
SEARCH_COMPONENTS = "catalog.search.search_components"
START_SERVICE_CREATION = "scaffolding.start.start_service_creation"
TEMPLATE_SELECTED = "scaffolding.configure.template_selected"
SERVICE_CREATED = "scaffolding.complete.service_created"
DEPLOY_APPLICATION = "deployment.deploy.deploy_application"
BUILD_SUCCEEDED = "deployment.build.build_succeeded"
DEPLOYMENT_COMPLETE = "deployment.complete.deployment_complete"
RUN_PIPELINE = "pipeline.run.run_pipeline"
CONFIGURE_MONITORING = "observability.configure.configure_monitoring"

CUSTOM_EVENTS: tuple[str, ...] = (
    USER_LOGIN,
    VIEW_DOCUMENTATION,
    SEARCH_COMPONENTS,
    START_SERVICE_CREATION,
    TEMPLATE_SELECTED,
    SERVICE_CREATED,
    DEPLOY_APPLICATION,
    BUILD_SUCCEEDED,
    DEPLOYMENT_COMPLETE,
    RUN_PIPELINE,
    CONFIGURE_MONITORING,
)

# Event names by code: code 0 is the page view, so ``name_code > 0`` means "custom event".
EVENT_NAMES: tuple[str, ...] = (PAGEVIEW, *CUSTOM_EVENTS)

# The platform's documented feature goals: Plausible goal display name -> custom event name.
FEATURE_GOALS: dict[str, str] = {
    "Deploy Application": DEPLOY_APPLICATION,
    "Create Service": SERVICE_CREATED,
    "View Documentation": VIEW_DOCUMENTATION,
    "Run Pipeline": RUN_PIPELINE,
    "Configure Monitoring": CONFIGURE_MONITORING,
}

# Pageview goals configured on the simulated Plausible site: display name -> path pattern.
# Plausible's wildcards: ``*`` matches within one path segment, ``**`` across segments.
PAGEVIEW_GOALS: dict[str, str] = {
    "Visit /docs**": "/docs**",
    "Visit /create/templates": CREATE_TEMPLATES,
}


@dataclass(frozen=True)
class FunnelDefinition:
    """An ordered funnel over identified events (methods.md §2)."""

    name: str
    description: str
    window_seconds: int
    steps: tuple[str, ...]


DAY_SECONDS = 86_400

DEFAULT_FUNNELS: tuple[FunnelDefinition, ...] = (
    FunnelDefinition(
        name="onboarding",
        description="From first login to a first service running in production",
        window_seconds=14 * DAY_SECONDS,
        steps=(
            USER_LOGIN,
            VIEW_DOCUMENTATION,
            START_SERVICE_CREATION,
            SERVICE_CREATED,
            DEPLOYMENT_COMPLETE,
        ),
    ),
    FunnelDefinition(
        name="deployment",
        description="A deployment from trigger to completion",
        window_seconds=1 * DAY_SECONDS,
        steps=(DEPLOY_APPLICATION, BUILD_SUCCEEDED, DEPLOYMENT_COMPLETE),
    ),
    FunnelDefinition(
        name="service_creation",
        description="Scaffolding a service from a template and deploying it",
        window_seconds=7 * DAY_SECONDS,
        steps=(
            START_SERVICE_CREATION,
            TEMPLATE_SELECTED,
            SERVICE_CREATED,
            DEPLOYMENT_COMPLETE,
        ),
    ),
)
