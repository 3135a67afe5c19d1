"""tilt/Tiltfile, executed with the starlark interpreter and stubs of Tilt's built-ins.

The stubs record each call, so the tests check what the Tiltfile declares: the images and
their Dockerfiles, live update, the overlay it applies, the resources with their labels
and dependencies, and the port-forwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import starlark

from tests.deploy.kube import ROOT, SERVICES, find, render

TILTFILE = ROOT / "tilt" / "Tiltfile"


@dataclass
class TiltCalls:
    """The built-in calls a Tiltfile made, with plain Python arguments."""

    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    kustomize: list[dict[str, Any]] = field(default_factory=list)
    k8s_yaml: list[Any] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """Convert Starlark lists, tuples and dicts, and what the stubs returned, to Python values."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "items"):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or hasattr(value, "index_of"):
        return [_plain(item) for item in value]
    return starlark.from_value(value)


def _execute() -> TiltCalls:
    calls = TiltCalls()

    def docker_build(ref: Any, context: Any, **kwargs: Any) -> None:
        calls.images[_plain(ref)] = {"context": _plain(context), **{k: _plain(v) for k, v in kwargs.items()}}

    def docker_build_with_restart(ref: Any, context: Any, entrypoint: Any, live_update: Any, **kwargs: Any) -> None:
        docker_build(ref, context, entrypoint=entrypoint, live_update=live_update, restart=True, **kwargs)

    def kustomize(path: Any, **kwargs: Any) -> str:
        calls.kustomize.append({"path": _plain(path), **{k: _plain(v) for k, v in kwargs.items()}})
        return "<kustomize blob>"

    def k8s_resource(workload: Any = None, **kwargs: Any) -> None:
        calls.resources[_plain(workload)] = {k: _plain(v) for k, v in kwargs.items()}

    def record(kind: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"kind": kind, "args": [_plain(a) for a in args], **{k: _plain(v) for k, v in kwargs.items()}}

        return build

    def allow_k8s_contexts(contexts: Any) -> None:
        calls.contexts.extend(_plain(contexts))

    builtins = {
        "docker_build": docker_build,
        "kustomize": kustomize,
        "k8s_yaml": lambda blob: calls.k8s_yaml.append(_plain(blob)),
        "k8s_resource": k8s_resource,
        "allow_k8s_contexts": allow_k8s_contexts,
        "update_settings": lambda **kwargs: None,
        "sync": record("sync"),
        "fall_back_on": record("fall_back_on"),
        "run": record("run"),
        "port_forward": record("port_forward"),
        "link": record("link"),
    }
    predeclared = {name: starlark.BuiltinFunction(name, impl) for name, impl in builtins.items()}
    extensions = {
        "ext://restart_process": {"docker_build_with_restart": docker_build_with_restart},
    }

    def loader(module_name: str) -> Any:
        if module_name not in extensions:
            raise AssertionError(f"the Tiltfile loads {module_name}, which the test does not stub")
        module = starlark.Module(module_name)
        for name, impl in extensions[module_name].items():
            module.set(name, starlark.BuiltinFunction(name, impl))
        return module

    starlark.exec_file(TILTFILE.read_text(), str(TILTFILE), predeclared=predeclared, loader=loader)
    return calls


@pytest.fixture(scope="module")
def tilt() -> TiltCalls:
    return _execute()


def test_builds_every_image(tilt: TiltCalls) -> None:
    assert sorted(tilt.images) == sorted(["aigw/base", "aigw/edge", *(f"aigw/{name}" for name in SERVICES)])
    for ref, image in tilt.images.items():
        dockerfile = ROOT / "tilt" / image["dockerfile"]
        assert image["context"] == "..", ref
        assert dockerfile.resolve() == ROOT / "deploy" / "docker" / f"{ref.removeprefix('aigw/')}.Dockerfile"
        assert dockerfile.exists(), ref


def test_build_context_holds_dockerfile_sources(tilt: TiltCalls) -> None:
    for ref, image in tilt.images.items():
        text = (ROOT / "tilt" / image["dockerfile"]).read_text()
        sources = [
            source
            for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
            for source in line.split()[:-1]
            if not source.startswith("--")
        ]
        for source in sources:
            assert any(source.rstrip("/").startswith(entry.rstrip("/")) for entry in image["only"]), (ref, source)


@pytest.mark.parametrize("name", SERVICES)
def test_live_update_syncs_python(tilt: TiltCalls, name: str) -> None:
    image = tilt.images[f"aigw/{name}"]
    steps = image["live_update"]
    syncs = {(step["args"][0], step["args"][1]) for step in steps if step["kind"] == "sync"}

    assert image["restart"] is True
    assert image["entrypoint"] == ["python", "-m", f"services.{name}"]
    assert steps[0] == {"kind": "fall_back_on", "args": [["../pyproject.toml"]]}
    assert ("../libs", "/app/libs") in syncs
    assert (f"../services/{name}", f"/app/services/{name}") in syncs
    assert image["build_args"] == {"SOURCE_OWNER": "10001"}


def test_applies_dev_overlay(tilt: TiltCalls) -> None:
    (call,) = tilt.kustomize

    assert (ROOT / "tilt" / call["path"]).resolve() == ROOT / "deploy" / "k8s" / "overlays" / "dev"
    assert call["flags"] == ["--load-restrictor=LoadRestrictionsNone"]
    assert tilt.k8s_yaml == ["<kustomize blob>"]


def test_resources_exist_in_overlay(tilt: TiltCalls) -> None:
    resources = render("dev")
    workloads = {w["metadata"]["name"] for w in [*find(resources, "Deployment"), *find(resources, "StatefulSet")]}

    assert set(tilt.resources) == workloads
    for name, resource in tilt.resources.items():
        assert resource["labels"], name
        for dependency in resource.get("resource_deps", []):
            assert dependency in tilt.resources, (name, dependency)


def test_resources_grouped_by_service(tilt: TiltCalls) -> None:
    for name in [*SERVICES, "edge"]:
        assert tilt.resources[name]["labels"] == [name]
    assert set(tilt.resources["router"]["resource_deps"]) >= {"security", "cache", "metering"}


def test_port_forwards(tilt: TiltCalls) -> None:
    forwards = {
        name: [(f["args"][0], f["args"][1]) for f in resource.get("port_forwards", [])]
        for name, resource in tilt.resources.items()
    }
    resources = render("dev")

    assert forwards["edge"] == [(8080, 8080)]
    assert forwards["grafana"] == [(3000, 3000)]
    assert forwards["prometheus"] == [(9090, 9090)]
    assert {name for name, ports in forwards.items() if ports} == {"edge", "grafana", "prometheus"}
    for name in ("edge", "grafana", "prometheus"):
        (workload,) = [d for d in find(resources, "Deployment", name)]
        container_ports = [p["containerPort"] for p in workload["spec"]["template"]["spec"]["containers"][0]["ports"]]
        assert forwards[name][0][1] in container_ports, name


def test_refuses_unknown_contexts(tilt: TiltCalls) -> None:
    assert tilt.contexts
    assert all(not context.startswith(("gke_", "arn:aws:", "aks-")) for context in tilt.contexts)
