"""The Kustomize overlays render, validate offline and follow the deployment rules.

Rendering uses kubectl's built-in kustomize; validation uses the Kubernetes JSON schemas
that kubernetes-validate bundles, in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kube import (
    K8S,
    OVERLAYS,
    ROOT,
    SERVICES,
    config_data,
    containers,
    find,
    one,
    render,
)

# The oldest release the manifests support (the preStop sleep action of the Cerbos pod
# needs 1.30) and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Seconds libs/grpcserver.py gives in-flight calls once the server stops (ServiceSpec.grace_s).
SERVER_STOP_GRACE_S = 10
EDGE_DOCKERFILE = ROOT / "deploy" / "docker" / "edge.Dockerfile"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_resources_validate_strict(overlay: str, version: str) -> None:
    errors = []
    for resource in render(overlay):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{resource['kind']}/{resource['metadata']['name']}: {error.message} at {list(error.path)}")
    assert errors == []


def test_validation_rejects_unknown_field() -> None:
    deployment = dict(one(render("dev"), "Deployment", "router"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_resources(overlay: str) -> None:
    resources = render(overlay)
    for name in [*SERVICES, "edge"]:
        assert one(resources, "Deployment", name)
        assert one(resources, "Service", name)
        assert one(resources, "HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]["name"] == name
        assert one(resources, "PodDisruptionBudget", name)
    for name in SERVICES:
        assert one(resources, "ConfigMap", f"{name}-config")


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_service_pod_rules(overlay: str, name: str) -> None:
    resources = render(overlay)
    deployment = one(resources, "Deployment", name)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = containers(deployment)
    port = SERVICES[name]["port"]

    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    # Only the dev overlay lets Tilt's live update write the sources.
    assert container["securityContext"]["readOnlyRootFilesystem"] is (overlay == "prod")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    tmp_mounts = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp_mounts) == 1
    (tmp_volume,) = [v for v in pod["volumes"] if v["name"] == tmp_mounts[0]]
    assert "emptyDir" in tmp_volume


@pytest.mark.parametrize("name", SERVICES)
def test_termination_grace_covers_drain(name: str) -> None:
    resources = render("prod")
    deployment = one(resources, "Deployment", name)
    (container,) = containers(deployment)
    settings = config_data(resources, deployment)
    prefix = SERVICES[name]["prefix"]

    command = container["lifecycle"]["preStop"]["exec"]["command"]
    drain_s = float(settings[f"{prefix}_DRAIN_S"])
    flush_s = float(settings.get(f"{prefix}_FLUSH_TIMEOUT_S", 0))
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    assert command[0] == "sleep"
    assert float(command[1]) == drain_s
    assert grace > float(command[1]) + drain_s + SERVER_STOP_GRACE_S + flush_s


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_service_config_names_known_variables(overlay: str, name: str) -> None:
    resources = render(overlay)
    settings = config_data(resources, one(resources, "Deployment", name))
    prefix = SERVICES[name]["prefix"]
    config_source = (ROOT / "services" / name / "config.py").read_text()
    telemetry_source = (ROOT / "libs" / "telemetry.py").read_text()

    for key in settings:
        if not key.startswith(f"{prefix}_"):
            continue
        suffix = key.removeprefix(f"{prefix}_")
        assert f'"{suffix}"' in config_source or suffix == "METRICS_ADDR" and "_METRICS_ADDR" in telemetry_source, key
    assert settings[f"{prefix}_LISTEN"] == f"0.0.0.0:{SERVICES[name]['port']}"
    assert settings[f"{prefix}_METRICS_PORT"] == str(SERVICES[name]["metrics"])


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        ("dev", "aigw/{name}:dev"),
        ("prod", "registry.example.com/aigw/{name}:0.1.0"),
    ],
)
def test_each_service_image_set_on_its_own(overlay: str, expected: str) -> None:
    resources = render(overlay)
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())

    names = [image["name"] for image in kustomization["images"]]
    assert sorted(names) == sorted(f"aigw/{name}" for name in [*SERVICES, "edge"])
    for name in [*SERVICES, "edge"]:
        images = [c["image"] for c in containers(one(resources, "Deployment", name))]
        assert images == [expected.format(name=name)]


def test_prod_datastores_are_external() -> None:
    resources = render("prod")

    assert find(resources, "StatefulSet") == []
    assert find(resources, "Secret") == []
    assert {d["metadata"]["name"] for d in find(resources, "Deployment")} == {*SERVICES, "edge", "cerbos"}
    metering = one(resources, "Deployment", "metering")
    (container,) = containers(metering)
    refs = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in container["env"]}
    assert refs["METERING_DATABASE_URL"] == {"name": "aigw-datastores", "key": "metering-database-url"}
    assert one(resources, "Service", "edge")["spec"]["type"] == "LoadBalancer"


def test_dev_datastores_in_cluster() -> None:
    resources = render("dev")
    secret = one(resources, "Secret", "aigw-datastores")
    postgres = one(resources, "StatefulSet", "postgres")
    metering = one(resources, "Deployment", "metering")
    (container,) = containers(metering)

    (image,) = [c["image"] for c in containers(postgres)]
    assert image.startswith("pgvector/pgvector:")
    assert one(resources, "Deployment", "redis")
    refs = {env["name"]: env["valueFrom"]["secretKeyRef"]["name"] for env in container["env"]}
    # The generated Secret's hashed name is what the Deployment refers to.
    assert refs["METERING_DATABASE_URL"] == secret["metadata"]["name"]


def test_cerbos_ships_every_policy() -> None:
    policies = ROOT / "deploy" / "cerbos" / "policies"
    expected = sorted(p.name for p in policies.glob("*.yaml") if not p.stem.endswith("_test"))

    for overlay in OVERLAYS:
        config_map = one(render(overlay), "ConfigMap", "cerbos-policies")
        assert sorted(config_map["data"]) == expected, overlay


# NetworkPolicy evaluation: which pods, by their app.kubernetes.io/name, may open a
# connection to a pod on a port. "anywhere" stands for a rule without `from`, and
# "namespace:<name>" for a namespaceSelector.


def _labels(resource: dict[str, Any]) -> dict[str, str]:
    return dict(resource["spec"]["template"]["metadata"]["labels"])


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        if expression["operator"] != "In":
            raise AssertionError(f"operator {expression['operator']} is not handled by this test")
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _allowed_sources(resources: tuple[dict[str, Any], ...], target: str, port: int) -> set[str]:
    workloads = [*find(resources, "Deployment"), *find(resources, "StatefulSet")]
    pods = {workload["metadata"]["name"]: _labels(workload) for workload in workloads}
    sources: set[str] = set()
    for policy in find(resources, "NetworkPolicy"):
        if not _selects(policy["spec"]["podSelector"], pods[target]):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            if "from" not in rule:
                sources.add("anywhere")
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    labels = peer["namespaceSelector"].get("matchLabels", {})
                    sources.add(f"namespace:{labels.get('kubernetes.io/metadata.name')}")
                elif "podSelector" in peer:
                    sources |= {name for name, labels in pods.items() if _selects(peer["podSelector"], labels)}
    return sources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_only_callers(overlay: str) -> None:
    resources = render(overlay)
    expected = {
        ("edge", 8080): {"anywhere"},
        ("router", 50051): {"edge"},
        ("security", 50052): {"edge", "router"},
        ("cache", 50053): {"router"},
        ("metering", 50054): {"router"},
        ("cerbos", 3593): {"security"},
    }

    policies = find(resources, "NetworkPolicy")
    deny_all = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert len(deny_all) == 1
    for (target, port), sources in expected.items():
        assert _allowed_sources(resources, target, port) == sources, (target, port)
    for name, settings in SERVICES.items():
        metrics_sources = _allowed_sources(resources, name, settings["metrics"])
        assert "anywhere" not in metrics_sources, name
        assert "namespace:monitoring" in metrics_sources, name


def test_dev_datastores_admit_only_their_services() -> None:
    resources = render("dev")

    assert _allowed_sources(resources, "postgres", 5432) == {"security", "cache", "metering", "grafana"}
    assert _allowed_sources(resources, "redis", 6379) == {"cache", "metering"}
    assert _allowed_sources(resources, "simulator", 8090) == {"router"}


def _edge_render_argv() -> list[str]:
    text = EDGE_DOCKERFILE.read_text().replace("\\\n", " ")
    match = re.search(r"python -m tools\.envoy_config (.+?) >", text)
    assert match, "edge.Dockerfile does not render the configuration with tools.envoy_config"
    return shlex.split(match.group(1))


def test_edge_image_config_validates(tmp_path: Path) -> None:
    from tools import protos

    protos.sync_third_party()
    descriptor = protos.build_descriptor(tmp_path / "aigateway.binpb")
    argv = _edge_render_argv()
    argv[argv.index("--descriptor") + 1] = str(descriptor)
    config = tmp_path / "envoy.yaml"

    rendered = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.envoy_config", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config.write_text(rendered.stdout)
    envoy = ROOT / ".venv" / "bin" / "envoy"
    result = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_edge_clusters_name_headless_services() -> None:
    argv = _edge_render_argv()
    resources = render("prod")

    for flag, name in (("--router", "router"), ("--security", "security")):
        host, port = argv[argv.index(flag) + 1].split(":")
        service = one(resources, "Service", host)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
    listen = argv[argv.index("--listen") + 1]
    (container,) = containers(one(resources, "Deployment", "edge"))
    assert int(listen.split(":")[1]) in [p["containerPort"] for p in container["ports"]]
