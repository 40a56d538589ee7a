"""The demo platform as data: portal pages, traffic sources, teams, event names, goals, funnels.

This module is the single source of truth for every name the demo uses. The synthetic population
draws from it and the simulated Plausible configures its goals from it; the platform's own
event names, feature goals and default funnels come from :mod:`exporter.platform_names`, which the
service's default configuration uses too.

Event names follow the platform tracker's ``{category}.{action}.{label}`` convention
(docs/upstreams.md#platform-goals-and-events).
"""

from __future__ import annotations

from ..platform_names import (  # noqa: F401 - the demo's names include the platform's
    BUILD_SUCCEEDED,
    CONFIGURE_MONITORING,
    DAY_SECONDS,
    DEFAULT_FUNNELS,
    DEPLOY_APPLICATION,
    DEPLOYMENT_COMPLETE,
    FEATURE_GOALS,
    RUN_PIPELINE,
    SEARCH_COMPONENTS,
    SERVICE_CREATED,
    START_SERVICE_CREATION,
    TEMPLATE_SELECTED,
    USER_LOGIN,
    VIEW_DOCUMENTATION,
    DocumentedFunnel,
)

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

# A dozen teams of very different sizes (population.py draws them with these shares, largest first).
TEAMS: tuple[str, ...] = (
    "payments",
    "checkout",
    "identity",
    "platform",
    "data",
    "mobile",
    "search",
    "growth",
    "security",
    "ml",
    "billing",
    "developer-experience",
)

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

# Pageview goals configured on the simulated Plausible site: display name -> path pattern.
# Plausible's wildcards: ``*`` matches within one path segment, ``**`` across segments.
PAGEVIEW_GOALS: dict[str, str] = {
    "Visit /docs**": "/docs**",
    "Visit /create/templates": CREATE_TEMPLATES,
}
