"""Delivery files agree with the application and with each other.

`make lint` checks each file against its own schema (hadolint, `docker compose config`, the
Kubernetes API schemas). These tests check what no schema can: that the image, the compose stack
and the manifests name the routes the app registers, the port it listens on by default, the user
the image runs as, the configuration keys the loader accepts, and the paths the other files use.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from aiohttp import web

from api.app import create_app
from exporter import __version__
from exporter.config import ENVIRONMENT, ServerConfig, load_config
from exporter.reports.pdf_fonts import DEJAVU
from exporter.service import AnalyticsService
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
DEFAULT_PORT = ServerConfig().port
APP_SERVICE = "analytics-dashboard"  # the compose service and the Kubernetes objects' name


# --- reading the files -------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (continuation lines joined)."""
    logical_lines: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):  # also inside continuations, as Docker does
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical_lines.append(pending + line)
        pending = ""
    stages: list[list[Instruction]] = []
    for line in logical_lines:
        keyword, _, arguments = line.strip().partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def arguments_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.arguments for instruction in stage if instruction.keyword == keyword]


def image_user_id() -> int:
    (user,) = arguments_of(final_stage(), "USER")
    return int(user.split(":")[0])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository-relative source, for the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts


def kubernetes_objects() -> dict[str, dict[str, Any]]:
    """Every manifest under deploy/kubernetes/ by kind (one object of each kind)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                assert document["kind"] not in objects, f"two {document['kind']} objects"
                objects[document["kind"]] = document
    return objects


def container() -> dict[str, Any]:
    (only,) = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def disabled_sources_config():
    return load_config(environ={}, overrides={
        "sources.plausible.url": None, "sources.experimentation.url": None,
        "sources.feedback.url": None, "events.path": None,
    })


@pytest.fixture
async def app_server(aiohttp_server):
    """The real application (every upstream disabled) on loopback."""
    return await aiohttp_server(create_app(AnalyticsService(disabled_sources_config())))


def registered_paths(app: web.Application) -> set[str]:
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


# --- Dockerfile --------------------------------------------------------------------------------

def test_image_is_built_in_one_stage_and_shipped_from_another():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    copied_from_builder = [args for args in arguments_of(final_stage(), "COPY") if args.startswith("--from=")]
    assert copied_from_builder, "the final stage copies the built environment from the builder"


def test_final_stage_installs_nothing():
    """No package manager, compiler or pip run in the final stage: it only copies the venv."""
    for command in arguments_of(final_stage(), "RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|pip|gcc|make)\b", command), command


def test_final_stage_runs_as_a_fixed_non_root_user_with_a_numeric_id():
    assert image_user_id() > 0


def test_final_stage_is_read_only_root_filesystem_friendly():
    environment = " ".join(arguments_of(final_stage(), "ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", environment)


def test_exposed_port_is_the_default_server_port():
    assert arguments_of(final_stage(), "EXPOSE") == [str(DEFAULT_PORT)]


def test_entrypoint_is_the_console_script_serving():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    (entrypoint,) = arguments_of(final_stage(), "ENTRYPOINT")
    (command,) = arguments_of(final_stage(), "CMD")
    assert json.loads(entrypoint)[0] in scripts
    assert json.loads(command) == ["serve"]


def test_the_image_has_the_reports_extra_and_the_pdf_typeface():
    """The image serves the xlsx and pdf exports: it installs the extra and carries DejaVu Sans
    where the PDF looks for it (exporter/reports/pdf_fonts.py)."""
    builder_runs = " ".join(arguments_of(dockerfile_stages()[0], "RUN"))
    assert '["optional-dependencies"]["reports"]' in builder_runs and "fonts-dejavu-core" in builder_runs
    fonts = re.compile(r"DejaVuSans(-Bold)?\.ttf")
    copied = [args.split() for args in arguments_of(final_stage(), "COPY") if fonts.search(args)]
    assert copied and all(words[-1].rstrip("/") == str(DEJAVU) for words in copied)
    assert {Path(word).name for words in copied for word in words[1:-1]} == {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf"}


def test_every_package_is_copied_into_the_build_and_not_ignored():
    """A new top-level package in pyproject.toml must reach the image too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = project["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in found["include"]}
    builder_copies = " ".join(arguments_of(dockerfile_stages()[0], "COPY"))
    allowed = {line[1:].strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for package in packages:
        assert re.search(rf"(^|\s){package}\s", builder_copies), f"{package} is not copied"
        assert package in allowed, f"{package} is excluded by .dockerignore"


def healthcheck_code() -> str:
    (healthcheck,) = arguments_of(final_stage(), "HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    executable, flag, code = json.loads(command)
    assert (executable, flag) == ("python", "-c")
    return code


def test_healthcheck_uses_only_the_standard_library_on_the_default_port():
    code = healthcheck_code()
    imported = set(re.findall(r"\bimport ([\w.]+)", code))
    assert imported <= set(sys.stdlib_module_names) | {"urllib.request"}
    assert f"http://127.0.0.1:{DEFAULT_PORT}/health" in code


async def run_healthcheck(code: str) -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=subprocess.DEVNULL)
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_passes_against_the_running_app_and_fails_without_it(app_server):
    code = healthcheck_code()
    assert "/health" in registered_paths(app_server.app)
    live = code.replace(f":{DEFAULT_PORT}/", f":{app_server.port}/")
    assert await run_healthcheck(live) == 0
    port = app_server.port
    await app_server.close()
    assert await run_healthcheck(code.replace(f":{DEFAULT_PORT}/", f":{port}/")) != 0


# --- docker-compose.yml and the Prometheus it runs --------------------------------------------

def test_compose_runs_the_service_in_demo_mode_read_only():
    service = compose()["services"][APP_SERVICE]
    # In a container, loopback is the container's own: the demo must be told to listen on every interface.
    assert service["command"] == ["serve", "--demo", "--host", "0.0.0.0"]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["image"].endswith(f":{__version__}")


def test_compose_bind_mounts_exist_in_the_repository():
    for name, service in compose()["services"].items():
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) is missing"


PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def prometheus_rules_mount() -> tuple[str, Path]:
    """(container path, repository directory) of the compose Prometheus' rules mount."""
    mounts = bind_mounts(compose()["services"]["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    (target,) = [target for target, source in mounts.items() if source == "./deploy/prometheus/rules"]
    return target, ROOT / "deploy" / "prometheus" / "rules"


def test_prometheus_scrapes_the_service():
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == APP_SERVICE]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"] == [{"targets": [f"{APP_SERVICE}:{DEFAULT_PORT}"]}]


def test_prometheus_loads_the_rule_files_and_not_their_unit_tests():
    target, directory = prometheus_rules_mount()
    patterns = [PurePosixPath(pattern) for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]]
    assert patterns and all(pattern.parent == PurePosixPath(target) for pattern in patterns)
    loaded = [path for pattern in patterns for path in directory.glob(pattern.name)]
    assert loaded, f"no file in {directory} matches {[str(pattern) for pattern in patterns]}"
    for path in loaded:
        assert set(load_yaml(path)) == {"groups"}, f"{path.name} is not a rules file"


def test_prometheus_config_and_its_rules_pass_promtool(tmp_path):
    """The config as the compose Prometheus sees it: rule globs resolved to the repository."""
    promtool = require_tool("promtool")
    target, directory = prometheus_rules_mount()
    config = load_yaml(PROMETHEUS_CONFIG)
    config["rule_files"] = [str(directory / PurePosixPath(pattern).relative_to(target))
                            for pattern in config["rule_files"]]
    resolved = tmp_path / "prometheus.yml"
    resolved.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([promtool, "check", "config", str(resolved)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern in config["rule_files"]:
        for path in Path(pattern).parent.glob(Path(pattern).name):
            assert f"Checking {path}" in result.stdout, f"promtool did not check {path.name}"


def grafana_mounts() -> dict[str, str]:
    return bind_mounts(compose()["services"]["grafana"])


def test_grafana_dashboard_providers_read_the_mounted_dashboards():
    mounts = grafana_mounts()
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    dashboards_target = next(target for target, source in mounts.items() if source == "./grafana/dashboards")
    provider_files = sorted((ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
    assert provider_files, "grafana/provisioning/dashboards/ has no provider file"
    for path in provider_files:
        for provider in load_yaml(path)["providers"]:
            assert provider["options"]["path"] == dashboards_target, path.name


def test_grafana_prometheus_datasource_reaches_the_compose_prometheus():
    """A literal URL, or an environment reference that the compose Grafana sets."""
    environment = compose()["services"]["grafana"].get("environment", {})
    datasource_files = sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"))
    assert datasource_files, "grafana/provisioning/datasources/ has no datasource file"
    urls = [source["url"] for path in datasource_files for source in load_yaml(path)["datasources"]
            if source["type"] == "prometheus"]
    assert urls
    for url in urls:
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda match: str(environment.get(match[1], match[0])), url)
        assert expanded.rstrip("/") == "http://prometheus:9090", url


def test_grafana_rate_interval_assumes_the_scrape_interval_prometheus_uses():
    """$__rate_interval is derived from the datasource's timeInterval: it must be the real one."""
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == APP_SERVICE]
    scrape_interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    datasource_files = sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"))
    for path in datasource_files:
        for source in load_yaml(path)["datasources"]:
            if source["type"] == "prometheus":
                assert source["jsonData"]["timeInterval"] == scrape_interval, path.name


# --- Kubernetes ----------------------------------------------------------------------------------

def test_kustomization_lists_every_manifest():
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    manifests = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


def test_no_secret_values_are_committed():
    assert "Secret" not in kubernetes_objects()


def test_pod_security_is_restricted_and_matches_the_image_user():
    pod = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == image_user_id()
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    restricted = container()["securityContext"]
    assert restricted["allowPrivilegeEscalation"] is False
    assert restricted["readOnlyRootFilesystem"] is True
    assert restricted["capabilities"]["drop"] == ["ALL"]


def volume_behind(mount_path: str) -> dict[str, Any]:
    """The pod volume mounted at ``mount_path`` or at a directory above it."""
    mounts = container()["volumeMounts"]
    (mount,) = [mount for mount in mounts if PurePosixPath(mount_path).is_relative_to(mount["mountPath"])]
    volumes = kubernetes_objects()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    (volume,) = [volume for volume in volumes if volume["name"] == mount["name"]]
    return volume


def test_tmp_is_the_only_writable_place_and_is_an_empty_dir():
    assert "emptyDir" in volume_behind("/tmp/analytics-demo")
    writable = [mount["mountPath"] for mount in container()["volumeMounts"] if not mount.get("readOnly")]
    assert writable == ["/tmp"]


def test_resources_are_requested_and_memory_is_limited():
    resources = container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_container_port_and_probes_match_the_app(app_server):
    (port,) = container()["ports"]
    assert port["containerPort"] == DEFAULT_PORT
    routes = registered_paths(app_server.app)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        action = container()[probe]["httpGet"]
        assert action["path"] in routes, probe
        assert action["port"] == port["name"], probe


def test_environment_names_only_known_settings_and_secrets_come_from_secret_files():
    for variable in container()["env"]:
        assert variable["name"] in ENVIRONMENT or variable["name"] == "ANALYTICS_CONFIG", variable["name"]
        assert "value" in variable, f"{variable['name']}: secrets are files, not environment values"
        if variable["name"].endswith("_FILE"):
            assert "secret" in volume_behind(variable["value"]), variable["name"]


def test_configmap_is_a_valid_configuration_at_the_configured_path(tmp_path):
    (config_variable,) = [item for item in container()["env"] if item["name"] == "ANALYTICS_CONFIG"]
    config_path = PurePosixPath(config_variable["value"])
    config_map = kubernetes_objects()["ConfigMap"]
    assert volume_behind(str(config_path))["configMap"]["name"] == config_map["metadata"]["name"]
    local_copy = tmp_path / config_path.name
    local_copy.write_text(config_map["data"][config_path.name], encoding="utf-8")
    config = load_config(str(local_copy), environ={})  # unknown keys raise ConfigError
    assert config.server.port == container()["ports"][0]["containerPort"]


def test_selectors_select_the_pods_and_the_service():
    objects = kubernetes_objects()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (("Deployment", objects["Deployment"]["spec"]["selector"]["matchLabels"]),
                           ("Service", objects["Service"]["spec"]["selector"]),
                           ("PodDisruptionBudget", objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])):
        assert selector.items() <= pod_labels.items(), kind
    service_labels = objects["Service"]["metadata"]["labels"]
    assert objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


def test_service_and_service_monitor_reach_the_metrics_route(app_server):
    objects = kubernetes_objects()
    (service_port,) = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == container()["ports"][0]["name"]
    (endpoint,) = objects["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] in registered_paths(app_server.app)


def test_disruption_budget_lets_a_node_drain_evict_a_pod():
    objects = kubernetes_objects()
    budget = objects["PodDisruptionBudget"]["spec"]
    if "maxUnavailable" in budget:
        assert budget["maxUnavailable"] >= 1
    else:
        assert budget["minAvailable"] < objects["Deployment"]["spec"]["replicas"]


def test_deployment_image_is_the_released_version():
    assert container()["image"].endswith(f":{__version__}")


# --- the Makefile ------------------------------------------------------------------------------

def make_commands(target: str, tmp_path: Path) -> list[str]:
    """What ``make TARGET`` would run in a fresh checkout (no virtual environment yet)."""
    result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [command.split(" install ", 1)[1] for command in commands if "pip install" in command and "-e" in command]


def test_run_installs_the_service_alone_and_test_adds_the_test_tools(tmp_path):
    assert installs(make_commands("run", tmp_path)) == ["--quiet -e ."]
    assert installs(make_commands("test", tmp_path)) == ["--quiet -e '.[test]'"]
    assert installs(make_commands("test-fast", tmp_path)) == ["--quiet -e '.[test]'"]
