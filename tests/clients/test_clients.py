"""Go and Kotlin gRPC clients call the typed chat API through the Envoy edge.

Each client is generated from protos/ with Debian's protoc and plugins
(tools/install_clients.sh installs them), built once per content hash of its inputs under
.build/clients/, and run against the session's ``gateway``. The client prints one JSON
object with what each call returned; these tests check its values.

A missing toolchain fails the tests with the command to run. Skip them with
``pytest -m "not clients"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

pytestmark = [pytest.mark.clients, pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".build" / "clients"

# The only protos the clients compile. chat.proto also imports
# google/protobuf/struct.proto, which protoc ships.
PROTOS = (
    ROOT / "protos" / "aigateway" / "type" / "v1" / "chat.proto",
    ROOT / "protos" / "aigateway" / "chat" / "v1" / "chat_service.proto",
)
INSTALL_HINT = "run `bash tools/install_clients.sh` (or `make test-clients`) to install the toolchains"

# Cold builds took 6 s (Go) and 6 to 13 s (Kotlin) on a 2-core machine, so this limit
# leaves room for slow CI runners.
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 90


@dataclass(frozen=True)
class Client:
    """A client program: its sources, its build script and the tools that script needs."""

    language: str
    sources: tuple[Path, ...]
    build_script: Path
    tools: tuple[str, ...]

    def build_dir(self) -> Path:
        """Return the cache directory for the current protos, sources and build script."""
        digest = hashlib.sha256()
        for path in (*PROTOS, *self.sources, self.build_script):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
        return CACHE / f"{self.language}-{digest.hexdigest()[:16]}"


CLIENTS = {
    "go": Client(
        language="go",
        sources=(HERE / "go" / "chat_client.go",),
        build_script=HERE / "build_go.sh",
        tools=("protoc", "protoc-gen-go", "protoc-gen-go-grpc", "go"),
    ),
    "kotlin": Client(
        language="kotlin",
        sources=(HERE / "kotlin" / "ChatClient.kt",),
        build_script=HERE / "build_kotlin.sh",
        tools=("protoc", "grpc_java_plugin", "javac", "java", "kotlinc"),
    ),
}

# The stamp file a finished build writes, so an interrupted build is redone.
DONE = "build-complete"


class Build:
    """One client's build: already in the cache, or running in the background."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.out = client.build_dir()
        self.process: subprocess.Popen[str] | None = None
        # Reported by launcher(), so one missing toolchain fails only that client's tests.
        self.missing = [tool for tool in client.tools if shutil.which(tool) is None]
        if self.missing or (self.out / DONE).exists():
            return

        # A build for older inputs is never used again.
        for stale in CACHE.glob(f"{client.language}-*"):
            if stale.is_dir() and stale != self.out:
                shutil.rmtree(stale)
        self.out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if client.language == "go":
            # Shared between builds, so a proto change recompiles only the generated code.
            env["GOCACHE"] = str(CACHE / "go-build-cache")
        self.process = subprocess.Popen(
            ["bash", str(client.build_script), str(self.out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )

    def launcher(self) -> Path:
        """Wait for the build to finish and return the path of the client's launcher."""
        if self.missing:
            pytest.fail(f"{self.client.language} client: {', '.join(self.missing)} not found on PATH; {INSTALL_HINT}")
        if self.process is not None:
            try:
                output, _ = self.process.communicate(timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                output, _ = self.process.communicate()
                pytest.fail(f"{self.client.language} client: build timed out after {BUILD_TIMEOUT_S} s\n{output}")
            if self.process.returncode != 0:
                pytest.fail(
                    f"{self.client.language} client: {self.client.build_script.name} failed with exit code"
                    f" {self.process.returncode}; its output follows\n{output}"
                )
            (self.out / DONE).write_text(f"{self.client.build_script.name} succeeded\n")
            self.process = None
        return self.out / "chat_client"

    def stop(self) -> None:
        """Kill the build if it is still running, which leaves its directory without a stamp file."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture(scope="session")
def client_builds() -> Iterator[dict[str, Build]]:
    """Start the builds of the clients whose inputs changed, in the background."""
    builds = {name: Build(client) for name, client in CLIENTS.items()}
    yield builds
    # A build that no selected test waited for must not outlive the session.
    for build in builds.values():
        build.stop()


# client_builds comes before gateway so the builds run while the gateway starts.
@pytest.fixture(scope="module", params=sorted(CLIENTS))
def result(request: pytest.FixtureRequest, client_builds: dict[str, Build], gateway: Any) -> dict[str, Any]:
    """Run one client against the gateway and return the JSON object it printed."""
    language = request.param
    launcher = client_builds[language].launcher()
    completed = subprocess.run(
        [str(launcher), gateway.grpc_address, gateway.api_key],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, f"{language} client failed:\n{completed.stderr}"
    output = json.loads(completed.stdout)
    output["language"] = language
    return output


def _name(result: dict[str, Any]) -> str:
    """Return the client's name as its prompts spell it."""
    return {"go": "Go", "kotlin": "Kotlin"}[result["language"]]


def test_unary_completion(result: dict[str, Any]) -> None:
    unary = result["unary"]

    assert unary["code"] == grpc.StatusCode.OK.value[0]
    assert f"Hello from {_name(result)}" in unary["content"]
    assert unary["finish_reason"] == "stop"
    assert unary["prompt_tokens"] > 0
    assert unary["completion_tokens"] > 0
    assert unary["total_tokens"] == unary["prompt_tokens"] + unary["completion_tokens"]
    assert unary["request_id"]
    assert unary["deployment"].startswith("gpt-4o-mini/")
    assert unary["cache"] == "CACHE_STATUS_MISS"


def test_streamed_completion(result: dict[str, Any]) -> None:
    stream = result["stream"]

    assert stream["code"] == grpc.StatusCode.OK.value[0]
    assert f"Stream to {_name(result)}" in stream["content"]
    assert stream["chunks"] > 1
    assert stream["finish_reason"] == "stop"
    assert stream["usage"] is not None, "no chunk carried usage although include_usage was set"
    assert stream["usage"]["total_tokens"] > 0
    assert stream["usage"]["total_tokens"] == stream["usage"]["prompt_tokens"] + stream["usage"]["completion_tokens"]
    assert stream["request_id"]
    assert stream["deployment"].startswith("gpt-4o-mini/")


def test_list_models(result: dict[str, Any]) -> None:
    models = result["models"]

    assert models["code"] == grpc.StatusCode.OK.value[0]
    assert {"gpt-4o-mini", "claude-3-5-haiku", "gpt-4o"} <= set(models["ids"])
    assert models["ids"] == sorted(models["ids"])


def test_bad_key_is_unauthenticated(result: dict[str, Any]) -> None:
    bad_key = result["bad_key"]

    # Envoy's ext_authz denial carries the OpenAI-style error body as the status message.
    assert bad_key["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "invalid_api_key" in bad_key["message"]


def test_unknown_model_is_not_found(result: dict[str, Any]) -> None:
    unknown = result["unknown_model"]

    assert unknown["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert unknown["reason"] == "MODEL_NOT_FOUND"
    assert unknown["domain"] == "aigateway.dev"
    assert unknown["metadata"]["model"] == "no-such-model"
    assert "no-such-model" in unknown["message"]


def test_premium_model_is_permission_denied(result: dict[str, Any]) -> None:
    premium = result["premium_model"]

    assert premium["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert premium["reason"] == "MODEL_NOT_ALLOWED"
    assert premium["domain"] == "aigateway.dev"
    assert premium["metadata"]["model"] == "gpt-4o"
