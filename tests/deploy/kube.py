"""Helpers of the deployment tests: render the Kustomize overlays and query the result."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBECTL = ROOT / ".tools" / "kubectl" / "kubectl"
# Kinds that kustomize generators name with a content hash suffix.
GENERATED_KINDS = ("ConfigMap", "Secret")

# Each service's gRPC port, metrics port and env prefix, as services/<name>/config.py
# reads them.
SERVICES = {
    "router": {"port": 50051, "metrics": 9101, "prefix": "ROUTER"},
    "security": {"port": 50052, "metrics": 9102, "prefix": "SECURITY"},
    "cache": {"port": 50053, "metrics": 9103, "prefix": "CACHE"},
    "metering": {"port": 50054, "metrics": 9104, "prefix": "METERING"},
}


def kubectl() -> Path:
    """Return the kubectl binary that tools/install_kubectl.sh installs, or fail the test."""
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: run `make install` (tools/install_kubectl.sh)")
    return KUBECTL


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """Render ``deploy/k8s/overlays/<overlay>`` with kustomize and return its resources."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", "--load-restrictor=LoadRestrictionsNone", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(resources: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Return the resources of ``kind``, only those called ``name`` when it is given.

    Generated ConfigMaps and Secrets carry a hash suffix, so ``name`` matches the name
    with or without it.
    """
    found = []
    for resource in resources:
        if resource["kind"] != kind:
            continue
        actual = resource["metadata"]["name"]
        hashed = kind in GENERATED_KINDS and actual.rsplit("-", 1)[0] == name
        if name is None or actual == name or hashed:
            found.append(resource)
    return found


def one(resources: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """Return the single resource of ``kind`` called ``name``; fail when there is not one."""
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the containers of a Deployment's or StatefulSet's pod template."""
    yield from deployment["spec"]["template"]["spec"]["containers"]


def config_data(resources: tuple[dict[str, Any], ...], deployment: dict[str, Any]) -> dict[str, str]:
    """Return the variables a container gets from the ConfigMaps in its envFrom."""
    data: dict[str, str] = {}
    for container in containers(deployment):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data.update(one(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    return data
