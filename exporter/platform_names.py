"""The target platform's documented names: tracker events, feature goals and default funnels.

Events follow the platform tracker's ``{category}.{action}.{label}`` convention and the feature
goals are the ones the platform documents (docs/upstreams.md#platform-goals-and-events). The service's default
feature and funnel configuration comes from here, and so does the demo, so a renamed event
cannot silently break a chart.
"""

from __future__ import annotations

from dataclasses import dataclass

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

# The platform's documented feature goals: Plausible goal display name -> custom event name.
FEATURE_GOALS: dict[str, str] = {
    "Deploy Application": DEPLOY_APPLICATION,
    "Create Service": SERVICE_CREATED,
    "View Documentation": VIEW_DOCUMENTATION,
    "Run Pipeline": RUN_PIPELINE,
    "Configure Monitoring": CONFIGURE_MONITORING,
}

@dataclass(frozen=True)
class DocumentedFunnel:
    """One of the platform's documented funnels: its tracker events in order (docs/methods.md#funnels)."""

    name: str
    description: str
    window_seconds: int
    steps: tuple[str, ...]


DAY_SECONDS = 86_400

DEFAULT_FUNNELS: tuple[DocumentedFunnel, ...] = (
    DocumentedFunnel(
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
    DocumentedFunnel(
        name="deployment",
        description="A deployment from trigger to completion",
        window_seconds=1 * DAY_SECONDS,
        steps=(DEPLOY_APPLICATION, BUILD_SUCCEEDED, DEPLOYMENT_COMPLETE),
    ),
    DocumentedFunnel(
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
