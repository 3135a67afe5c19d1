"""gRPC servicers of the security service: Envoy's ext_authz check and prompt screening
with API key administration."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from aigateway.security.v1 import security_service_pb2 as pb
from aigateway.security.v1 import security_service_pb2_grpc as pb_grpc
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, status_pb2

from libs.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from libs.logs import request_id_var
from libs.principal import Principal
from libs.screening import SCREENED_HEADER
from services.security import metrics
from services.security.apikeys import ApiKeyRecord, ApiKeyStore
from services.security.audit import AuditEvent, AuditLog
from services.security.authz import ModelAuthorizer
from services.security.edge_screening import EdgeScreener
from services.security.injection import InjectionDetector, InjectionVerdict
from services.security.jwt_auth import JwtVerifier, TokenError, looks_like_jwt
from services.security.pii import PiiRedactor, Redaction

logger = logging.getLogger(__name__)

# Texts from these roles come from the end user or from tools; operator prompts
# (system, developer) and earlier model turns are trusted for injection screening.
SCREENED_ROLES = frozenset({"user", "tool", "function"})
# Prompts up to this many characters are screened on the event loop (well under a
# millisecond); larger ones go to a worker thread.
INLINE_SCREEN_CHARS = 64 * 1024


def _key_from_headers(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name in ("x-api-key", "api-key"):
        if headers.get(name):
            return headers[name].strip()
    return None


# Paths of the Anthropic-compatible surface, whose clients expect Anthropic's error shape.
ANTHROPIC_PATH_PREFIX = "/v1/messages"


def _denied(message: str, code: str, path: str) -> authz_pb.CheckResponse:
    error = AuthenticationError(message, reason=code.upper(), openai_code=code)
    if path.split("?", 1)[0].startswith(ANTHROPIC_PATH_PREFIX):
        body = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": message}})
    else:
        body = error.openai_body().decode("ascii")
    return authz_pb.CheckResponse(
        status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=message),
        denied_response=authz_pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
            headers=[
                core_pb.HeaderValueOption(
                    header=core_pb.HeaderValue(key="content-type", value="application/json"),
                    append_action=core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                ),
                core_pb.HeaderValueOption(
                    header=core_pb.HeaderValue(key="www-authenticate", value='Bearer realm="aigateway"'),
                    append_action=core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                ),
            ],
            body=body,
        ),
    )


class AuthorizationServicer(authz_grpc.AuthorizationServicer):
    """Envoy ext_authz: verify the API key or JWT and hand the principal to the edge as headers."""

    def __init__(
        self, keys: ApiKeyStore, edge_screener: EdgeScreener | None = None, tokens: JwtVerifier | None = None
    ) -> None:
        self.keys = keys
        self.edge_screener = edge_screener
        self.tokens = tokens

    async def Check(  # noqa: N802 - name fixed by Envoy's API
        self, request: authz_pb.CheckRequest, context: grpc.aio.ServicerContext
    ) -> authz_pb.CheckResponse:
        """Allow a request with a valid key or token; deny any other with 401 in OpenAI's error shape,
        or Anthropic's on the `/v1/messages` surface."""
        headers = dict(request.attributes.request.http.headers)
        path = request.attributes.request.http.path
        if headers.get("x-request-id"):
            # Envoy sends the HTTP request's id inside the check, not as call metadata, so
            # the log lines of this call carry the id that the router's lines carry too.
            request_id_var.set(headers["x-request-id"])
        presented = _key_from_headers(headers)
        if presented is None:
            metrics.AUTH_DECISIONS.labels("missing_key").inc()
            return _denied(
                "missing API key: send it as `Authorization: Bearer <key>` or `x-api-key`", "missing_api_key", path
            )

        if looks_like_jwt(presented):
            if self.tokens is None:
                metrics.AUTH_DECISIONS.labels("invalid_token").inc()
                return _denied("this gateway accepts API keys, not JSON Web Tokens", "invalid_token", path)
            try:
                principal = await self.tokens.verify(presented)
            except TokenError as exc:
                metrics.AUTH_DECISIONS.labels("invalid_token").inc()
                logger.info("token rejected", extra={"reason": str(exc)})
                return _denied(f"invalid token: {exc}", "invalid_token", path)
        else:
            verified = await self.keys.verify(presented)
            if verified is None:
                metrics.AUTH_DECISIONS.labels("invalid_key").inc()
                return _denied(
                    "invalid API key: check the key, or create one with "
                    "`python -m services.security.keys_cli create --tenant TENANT --roles user`",
                    "invalid_api_key",
                    path,
                )
            principal = verified

        metrics.AUTH_DECISIONS.labels("allowed").inc()
        added = principal.to_headers()
        if self.edge_screener is not None:
            digest = await self.edge_screener.digest(
                request.attributes.request.http, headers.get("x-request-id", ""), principal
            )
            if digest is not None:
                added[SCREENED_HEADER] = digest
        return authz_pb.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=authz_pb.OkHttpResponse(
                headers=[
                    core_pb.HeaderValueOption(
                        header=core_pb.HeaderValue(key=key, value=value),
                        append_action=core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                    )
                    for key, value in added.items()
                ],
                # The edge removes client x-aigw-* headers too; this does not depend on it.
                headers_to_remove=["authorization", "x-api-key", "api-key"]
                + ([] if SCREENED_HEADER in added else [SCREENED_HEADER]),
            ),
        )


def _principal(message: Any) -> Principal:
    if not message.tenant or not message.key_id:
        raise InvalidRequestError(
            "principal.tenant and principal.key_id are required", reason="MISSING_PRINCIPAL", param="principal"
        )
    return Principal(
        tenant=message.tenant,
        key_id=message.key_id,
        roles=tuple(message.roles),
        allowed_models=tuple(message.allowed_models),
        budget_usd=message.budget_usd if message.HasField("budget_usd") else None,
    )


def _timestamp(value: Any) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _api_key_message(record: ApiKeyRecord) -> pb.ApiKey:
    message = pb.ApiKey(
        id=record.id,
        tenant=record.tenant,
        name=record.name,
        roles=list(record.roles),
        allowed_models=list(record.allowed_models),
    )
    if record.budget_usd is not None:
        message.budget_usd = float(record.budget_usd)
    created = _timestamp(record.created_at)
    if created is not None:
        message.create_time.CopyFrom(created)
    revoked = _timestamp(record.revoked_at)
    if revoked is not None:
        message.revoke_time.CopyFrom(revoked)
    return message


class SecurityServicer(pb_grpc.SecurityServiceServicer):
    """Prompt screening and API key administration."""

    def __init__(
        self,
        keys: ApiKeyStore,
        authorizer: ModelAuthorizer,
        redactor: PiiRedactor,
        detector: InjectionDetector,
        audit: AuditLog,
    ) -> None:
        self.keys = keys
        self.authorizer = authorizer
        self.redactor = redactor
        self.detector = detector
        self.audit = audit

    async def ScreenPrompt(  # noqa: N802 - name fixed by the proto
        self, request: pb.ScreenPromptRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScreenPromptResponse:
        """Check the model policy, block injections, redact PII."""
        principal = _principal(request.principal)
        if not request.model:
            raise InvalidRequestError("model is required", reason="MISSING_MODEL", param="model")
        texts = [(item.role, item.text) for item in request.texts]
        allowed, verdict, redaction = await self._evaluate(principal, request.model, request.model_attributes, texts)

        event = AuditEvent(
            request_id=request.request_id,
            tenant=principal.tenant,
            key_id=principal.key_id,
            model=request.model,
            action="invoke",
            decision="allowed",
            reason="",
            pii_counts=dict(redaction.counts),
            injection_technique=None,
        )
        if not allowed:
            metrics.SCREEN_DECISIONS.labels("model_not_allowed").inc()
            self.audit.record(event.denied("MODEL_NOT_ALLOWED"))
            raise PermissionDeniedError(
                f"this API key or token may not use the model `{request.model}`: its roles or model list "
                "do not allow it",
                reason="MODEL_NOT_ALLOWED",
                param="model",
                openai_code="model_not_allowed",
                metadata={"model": request.model},
            )
        if verdict is not None:
            metrics.SCREEN_DECISIONS.labels("prompt_injection").inc()
            self.audit.record(event.denied("PROMPT_INJECTION_DETECTED", verdict.technique))
            raise InvalidRequestError(
                "the prompt was blocked because it looks like a prompt-injection attempt "
                f"({verdict.technique or 'unspecified technique'}); rephrase the request",
                reason="PROMPT_INJECTION_DETECTED",
                param="messages",
                openai_code="prompt_injection_detected",
                metadata={"technique": verdict.technique or ""},
            )

        metrics.SCREEN_DECISIONS.labels("allowed").inc()
        for entity_type, count in redaction.counts.items():
            metrics.PII_REDACTIONS.labels(entity_type).inc(count)
        self.audit.record(event)
        if not redaction.mapping:
            return pb.ScreenPromptResponse(redacted=False)
        return pb.ScreenPromptResponse(
            redacted=True,
            texts=[
                pb.PromptText(text=text, role=item.role)
                for text, item in zip(redaction.texts, request.texts, strict=True)
            ],
            placeholders=redaction.mapping,
            pii_counts=redaction.counts,
        )

    async def screen_at_edge(
        self,
        request_id: str,
        principal: Principal,
        model: str,
        attributes: Mapping[str, str],
        texts: list[tuple[str, str]],
    ) -> bool:
        """Screen a prompt during the ext_authz check and return True when it may go out unchanged.

        Such a prompt is counted and audited as allowed here. Any other outcome records
        nothing and returns False: the router then calls ScreenPrompt, which records it.
        NOTE: while the router's catalog and SECURITY_CATALOG differ (during a rollout),
        the router's digest differs too, and its ScreenPrompt audits the request again.
        """
        allowed, verdict, redaction = await self._evaluate(principal, model, attributes, texts)
        if not allowed or verdict is not None or redaction.mapping:
            return False
        metrics.SCREEN_DECISIONS.labels("allowed").inc()
        self.audit.record(
            AuditEvent(
                request_id=request_id,
                tenant=principal.tenant,
                key_id=principal.key_id,
                model=model,
                action="invoke",
                decision="allowed",
                reason="",
                pii_counts={},
                injection_technique=None,
            )
        )
        return True

    async def _evaluate(
        self, principal: Principal, model: str, attributes: Mapping[str, str], texts: list[tuple[str, str]]
    ) -> tuple[bool, InjectionVerdict | None, Redaction]:
        """Return the policy decision, the injection verdict and the redaction of ``texts``."""
        cached = self.authorizer.cached_decision(principal, model, attributes)
        if cached is not None:
            verdict, redaction = await self._screen(texts)
            return cached, verdict, redaction
        # The policy check is a network call: start it, screen the texts meanwhile.
        policy = asyncio.ensure_future(self.authorizer.can_invoke(principal, model, dict(attributes)))
        try:
            verdict, redaction = await self._screen(texts)
            allowed = await policy
        except Exception as exc:
            policy.cancel()
            if isinstance(exc, (ConnectionError, OSError, TimeoutError, grpc.aio.AioRpcError)):
                raise UnavailableError(
                    "the authorization policy engine is unavailable", reason="POLICY_UNAVAILABLE", retry_after_s=1.0
                ) from exc
            raise
        return allowed, verdict, redaction

    async def _screen(self, texts: Sequence[tuple[str, str]]) -> tuple[InjectionVerdict | None, Redaction]:
        if sum(len(text) for _, text in texts) > INLINE_SCREEN_CHARS:
            # A large prompt takes long enough to screen that the event loop would stall
            # every other call, so it is screened in a worker thread.
            return await asyncio.to_thread(self._screen_texts, texts)
        return self._screen_texts(texts)

    def _screen_texts(self, texts: Sequence[tuple[str, str]]) -> tuple[InjectionVerdict | None, Redaction]:
        verdict = None
        for role, text in texts:
            if role in SCREENED_ROLES or not role:
                candidate = self.detector.scan(text)
                if candidate.blocked:
                    verdict = candidate
                    break
        return verdict, self.redactor.redact([text for _, text in texts])

    async def CreateApiKey(  # noqa: N802 - name fixed by the proto
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        """Create a key and return it once."""
        if not request.tenant:
            raise InvalidRequestError("tenant is required", reason="MISSING_TENANT", param="tenant")
        if not request.name:
            raise InvalidRequestError("name is required", reason="MISSING_NAME", param="name")
        budget = request.budget_usd if request.HasField("budget_usd") else None
        if budget is not None and budget < 0:
            raise InvalidRequestError(
                f"budget_usd is {budget}; it must be 0 or more", reason="INVALID_BUDGET", param="budget_usd"
            )

        key, record = await self.keys.create(
            request.tenant, request.name, list(request.roles), list(request.allowed_models), budget
        )
        return pb.CreateApiKeyResponse(api_key=_api_key_message(record), key=key)

    async def ListApiKeys(  # noqa: N802 - name fixed by the proto
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        """List keys, never the key texts."""
        records = await self.keys.list(request.tenant or None)
        return pb.ListApiKeysResponse(api_keys=[_api_key_message(record) for record in records])

    async def RevokeApiKey(  # noqa: N802 - name fixed by the proto
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        """Revoke a key; revoking twice is not an error."""
        if not request.id:
            raise InvalidRequestError("id is required", reason="MISSING_KEY_ID", param="id")
        await self.keys.revoke(request.id)
        record = next((r for r in await self.keys.list(None) if r.id == request.id), None)
        if record is None:
            raise NotFoundError(
                f"no API key has the id {request.id!r}",
                reason="KEY_NOT_FOUND",
                param="id",
                metadata={"key_id": request.id},
            )
        return pb.RevokeApiKeyResponse(api_key=_api_key_message(record))
