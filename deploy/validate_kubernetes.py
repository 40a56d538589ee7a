"""Validate Kubernetes manifests against the API schemas, strictly; exit 1 on any problem.

    python deploy/validate_kubernetes.py deploy/kubernetes/*.yaml

Built-in kinds are checked with kubernetes-validate's strict schemas (an unknown field is an
error, not pruned) for the oldest Kubernetes release the manifests support and for the newest
one the tool knows. Prometheus Operator kinds (monitoring.coreos.com/v1) are custom resources
that kubernetes-validate has no schema for and would only warn about: they are checked with the
models cloudcoil generates from the operator's CRD schemas. Those models drop unknown fields the
way the API server prunes them, so a field lost in the round trip is reported. A Kustomization is
not a cluster object and is skipped; any other kind without a schema is an error.

`make lint` runs this with the lint tools' environment, which has both libraries.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from cloudcoil.resources import Resource
from kubernetes_validate import utils as kubernetes_validate

# PodDisruptionBudget.spec.unhealthyPodEvictionPolicy is generally available from 1.31 on.
OLDEST_SUPPORTED_KUBERNETES = "1.31.0"
PROMETHEUS_OPERATOR_API = "monitoring.coreos.com/v1"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with one manifest (empty when it is valid)."""
    api_version = manifest.get("apiVersion")
    if api_version == KUSTOMIZE_API:
        return []
    if api_version == PROMETHEUS_OPERATOR_API:
        return _prometheus_operator_problems(manifest)
    return _builtin_problems(manifest)


def _builtin_problems(manifest: dict[str, Any]) -> list[str]:
    problems = []
    for version in (OLDEST_SUPPORTED_KUBERNETES, kubernetes_validate.latest_version()):
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = ".".join(map(str, error.path)) or "(top level)"
            problems.append(f"Kubernetes {error.version}: {location}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(error.message)
    return problems


def _prometheus_operator_problems(manifest: dict[str, Any]) -> list[str]:
    model = getattr(prometheus_operator, str(manifest.get("kind")), None)
    if not (isinstance(model, type) and issubclass(model, Resource)):
        return [f"{manifest.get('kind')!r} is not a {PROMETHEUS_OPERATOR_API} resource kind"]
    try:
        parsed = model.model_validate(manifest)
    except pydantic.ValidationError as error:
        return [f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors()]
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{path}: unknown field" for path in _dropped_fields(manifest, kept)]


def _dropped_fields(original: Any, kept: Any, path: str = "") -> Iterator[str]:
    """Paths of the mapping keys in ``original`` that ``kept`` no longer has."""
    if isinstance(original, dict) and isinstance(kept, dict):
        for key, value in original.items():
            where = f"{path}.{key}" if path else str(key)
            if key in kept:
                yield from _dropped_fields(value, kept[key], where)
            else:
                yield where
    elif isinstance(original, list) and isinstance(kept, list):
        for index, (value, kept_value) in enumerate(zip(original, kept)):
            yield from _dropped_fields(value, kept_value, f"{path}.{index}")


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            manifests = [document for document in yaml.safe_load_all(stream) if document]
        for manifest in manifests:
            name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name', '')}"
            problems = manifest_problems(manifest)
            for problem in problems:
                print(f"{path}: {name}: {problem}")
            failed |= bool(problems)
    if not failed:
        print(f"{len(paths)} files valid (Kubernetes {OLDEST_SUPPORTED_KUBERNETES} and "
              f"{kubernetes_validate.latest_version()}, {PROMETHEUS_OPERATOR_API} CRD models)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
