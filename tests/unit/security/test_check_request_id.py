"""The ext_authz check logs under the HTTP request's id, which Envoy sends inside the check."""

from __future__ import annotations

from typing import Any

from envoy.service.auth.v3 import external_auth_pb2 as authz_pb

from libs.logs import request_id_var
from services.security.service import AuthorizationServicer


def _check_request(**headers: str) -> authz_pb.CheckRequest:
    request = authz_pb.CheckRequest()
    request.attributes.request.http.path = "/v1/chat/completions"
    request.attributes.request.http.headers.update(headers)
    return request


async def test_check_takes_the_edge_request_id() -> None:
    servicer = AuthorizationServicer(keys=None)  # type: ignore[arg-type]
    context: Any = None

    # A JWT while tokens are off is denied before any key store is asked.
    response = await servicer.Check(
        _check_request(**{"x-request-id": "req-7f3a", "authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}),
        context,
    )

    assert response.denied_response.status.code == 401
    assert request_id_var.get() == "req-7f3a"
