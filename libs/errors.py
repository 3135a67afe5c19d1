"""The gateway's exception tree and its mapping to gRPC and OpenAI errors.

    GatewayError
    ├── InvalidRequestError     INVALID_ARGUMENT     400  (names the field in ``param``)
    ├── AuthenticationError     UNAUTHENTICATED      401
    ├── PermissionDeniedError   PERMISSION_DENIED    403
    ├── NotFoundError           NOT_FOUND            404
    ├── ResourceExhaustedError  RESOURCE_EXHAUSTED   429  (budget, rate limit; ``retry_after_s``)
    ├── UnavailableError        UNAVAILABLE          503  (``retry_after_s``)
    ├── DeadlineExceededError   DEADLINE_EXCEEDED    504
    └── InternalError           INTERNAL             500

Domain code raises these; the server interceptor turns them into a ``google.rpc.Status``
with an ``ErrorInfo`` (reason, domain, metadata) and the details that apply. Messages are
shown to clients, so they never contain prompt text, keys or provider bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "aigateway.dev"
ERROR_BODY_METADATA = "x-aigw-error-body"


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        param: str | None = None,
        openai_code: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.param = param
        self.openai_code = openai_code or reason.lower()
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s

    def openai_body(self) -> bytes:
        """Return OpenAI's ``{"error": {...}}`` JSON for this error, in ASCII.

        ASCII because the body also travels as gRPC metadata, which allows no other bytes.
        """
        return json.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.openai_type,
                    "param": self.param,
                    "code": self.openai_code,
                }
            },
            ensure_ascii=True,
            separators=(",", ":"),
        ).encode("ascii")

    def to_status(self) -> status_pb2.Status:
        """Return the ``google.rpc.Status`` with ErrorInfo and the details that apply."""
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)
        status.details.add().Pack(info)
        if self.param is not None:
            violation = error_details_pb2.BadRequest.FieldViolation(field=self.param, description=self.message)
            status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(int(self.retry_after_s * 1000))
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        self._add_details(status)
        return status

    def _add_details(self, status: status_pb2.Status) -> None:
        """Add subclass-specific details to ``status``."""


class InvalidRequestError(GatewayError):
    """The request is malformed or has an invalid value; ``param`` names the field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    openai_type = "invalid_request_error"


class AuthenticationError(GatewayError):
    """No credentials, or credentials that are invalid, expired or revoked."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    openai_type = "authentication_error"


class PermissionDeniedError(GatewayError):
    """The caller is known but may not do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    openai_type = "permission_error"


class NotFoundError(GatewayError):
    """The named resource, such as a model, does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    openai_type = "invalid_request_error"


class ResourceExhaustedError(GatewayError):
    """A budget or rate limit does not allow the request now."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    openai_type = "rate_limit_error"

    def __init__(self, message: str, *, subject: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.subject = subject

    def _add_details(self, status: status_pb2.Status) -> None:
        violation = error_details_pb2.QuotaFailure.Violation(subject=self.subject, description=self.message)
        status.details.add().Pack(error_details_pb2.QuotaFailure(violations=[violation]))


class UnavailableError(GatewayError):
    """A dependency (a provider, a service) cannot serve the request now."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    openai_type = "service_unavailable_error"


class DeadlineExceededError(GatewayError):
    """The request ran out of time."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    openai_type = "timeout_error"


class InternalError(GatewayError):
    """A bug or an unexpected failure; details are in the log, not the message."""

    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500
    openai_type = "server_error"


_BY_CODE: dict[int, type[GatewayError]] = {
    cls.grpc_code.value[0]: cls
    for cls in (
        InvalidRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        InternalError,
    )
}


def from_status(status: status_pb2.Status) -> GatewayError:
    """Rebuild a GatewayError from a ``google.rpc.Status`` another service returned."""
    cls = _BY_CODE.get(status.code, InternalError)
    reason, metadata, param, retry_after = "UNKNOWN", {}, None, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                param = bad.field_violations[0].field
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    if status.code == code_pb2.DEADLINE_EXCEEDED and reason == "UNKNOWN":
        reason = "DEADLINE_EXCEEDED"
    return cls(status.message, reason=reason, param=param, metadata=metadata, retry_after_s=retry_after)


def from_rpc_error(error: grpc.aio.AioRpcError, dependency: str) -> GatewayError:
    """Turn a failed call to another gateway service into a GatewayError.

    The rich status is used when the service sent one; a transport failure (the service
    is down or timed out) becomes UNAVAILABLE or DEADLINE_EXCEEDED naming the dependency.
    """
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if status.code == error.code().value[0]:
                return from_status(status)
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(
            f"the {dependency} service timed out",
            reason="DEPENDENCY_TIMEOUT",
            metadata={"dependency": dependency},
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return UnavailableError(
            f"the {dependency} service is unavailable",
            reason="DEPENDENCY_UNAVAILABLE",
            metadata={"dependency": dependency},
            retry_after_s=1.0,
        )
    cls = _BY_CODE.get(code.value[0], InternalError)
    return cls(
        error.details() or f"the {dependency} service failed",
        reason=f"DEPENDENCY_{code.name}",
        metadata={"dependency": dependency},
    )
