"""A Node @grpc/grpc-js client calls the typed chat API through the Envoy edge."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import google.rpc.status_pb2
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NODE_DIR = Path(__file__).parent / "node"
ROOT = Path(__file__).resolve().parents[2]
# The googleapis-common-protos wheel ships google/rpc/*.proto beside its modules.
GOOGLEAPIS_ROOT = Path(google.rpc.status_pb2.__file__).resolve().parents[2]

# gRPC status codes, as numbers on the wire.
UNAUTHENTICATED = 16
NOT_FOUND = 5


@pytest.fixture(scope="module")
def node_result(gateway: Any) -> dict[str, Any]:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `make install`")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300)
    completed = subprocess.run(
        [
            "node",
            "chat_client.js",
            gateway.grpc_address,
            gateway.api_key,
            str(ROOT / "protos"),
            str(ROOT / "protos" / "third_party"),
            str(GOOGLEAPIS_ROOT),
        ],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_unary_completion(node_result: dict[str, Any]) -> None:
    unary = node_result["unary"]

    assert unary["code"] == 0
    assert "Hello from Node" in unary["content"]
    assert unary["finish_reason"] == "stop"
    assert unary["prompt_tokens"] > 0
    assert unary["deployment"].startswith("gpt-4o-mini/")


def test_streamed_completion(node_result: dict[str, Any]) -> None:
    stream = node_result["stream"]

    assert stream["code"] == 0
    assert "Stream to Node" in stream["content"]
    assert stream["chunks"] > 1
    assert stream["usage"]["total_tokens"] > 0
    assert stream["gateway"]["request_id"]


def test_bad_key_is_unauthenticated(node_result: dict[str, Any]) -> None:
    assert node_result["bad_key"]["code"] == UNAUTHENTICATED


def test_unknown_model_is_not_found(node_result: dict[str, Any]) -> None:
    unknown = node_result["unknown_model"]

    assert unknown["code"] == NOT_FOUND
    assert "no-such-model" in unknown["details"]
    assert unknown["error_info"]["reason"] == "MODEL_NOT_FOUND"
    assert unknown["error_info"]["domain"] == "aigateway.dev"
    assert unknown["error_info"]["metadata"] == {"model": "no-such-model"}
