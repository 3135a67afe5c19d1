"""The exception tree maps to gRPC statuses with details and to OpenAI error bodies."""

import json

import grpc
from google.rpc import error_details_pb2

from libs.errors import (
    InvalidRequestError,
    NotFoundError,
    ResourceExhaustedError,
    from_status,
)


def test_invalid_request_carries_bad_request_detail() -> None:
    error = InvalidRequestError("invalid type for `temperature`", reason="INVALID_REQUEST", param="temperature")

    status = error.to_status()

    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("INVALID_REQUEST", "aigateway.dev")
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "temperature"


def test_openai_body_shape_is_ascii() -> None:
    error = NotFoundError(
        "the model `modèle` does not exist", reason="MODEL_NOT_FOUND", param="model", openai_code="model_not_found"
    )

    body = error.openai_body()

    assert body.isascii()
    assert json.loads(body) == {
        "error": {
            "message": "the model `modèle` does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_status_round_trip_keeps_reason_and_retry() -> None:
    error = ResourceExhaustedError("budget exceeded", reason="BUDGET_EXCEEDED", subject="key:abc", retry_after_s=2.5)

    rebuilt = from_status(error.to_status())

    assert isinstance(rebuilt, ResourceExhaustedError)
    assert rebuilt.reason == "BUDGET_EXCEEDED"
    assert rebuilt.retry_after_s == 2.5
    assert rebuilt.http_status == 429
