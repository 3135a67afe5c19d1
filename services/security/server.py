"""Wiring of the security process: key store, policy client, screeners and servicers."""

from __future__ import annotations

import logging

from aigateway.security.v1 import security_service_pb2, security_service_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

from libs.errors import UnavailableError
from libs.grpcserver import ServiceSpec
from services.security.apikeys import ApiKeyStore
from services.security.audit import AuditLog
from services.security.authz import ModelAuthorizer
from services.security.config import SecurityConfig
from services.security.edge_screening import EdgeScreener, load_model_attributes
from services.security.injection import InjectionDetector
from services.security.jwt_auth import JwtVerifier
from services.security.pii import PiiRedactor
from services.security.service import AuthorizationServicer, SecurityServicer

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    security_service_pb2.DESCRIPTOR.services_by_name["SecurityService"].full_name,
    external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"].full_name,
)


async def build(config: SecurityConfig) -> ServiceSpec:
    """Open the stores and clients and return the server spec."""
    keys = await ApiKeyStore.open(config.database_url, cache_ttl_s=config.key_cache_ttl_s)
    audit = await AuditLog.open(config.database_url)
    authorizer = await ModelAuthorizer.connect(config.cerbos_address, decision_ttl_s=config.policy_cache_ttl_s)
    screening = SecurityServicer(keys, authorizer, PiiRedactor(), InjectionDetector(), audit)
    edge_screener = None
    if config.catalog_path:
        edge_screener = EdgeScreener(load_model_attributes(config.catalog_path), screening.screen_at_edge)
    tokens = None
    if config.jwt is not None:
        tokens = JwtVerifier(config.jwt)
        try:
            await tokens.load()
        except UnavailableError as exc:
            # The provider may be down for a moment; tokens load the keys again when they arrive.
            logger.warning("could not load the JWKS at start", extra={"error": exc.message})
    edge = AuthorizationServicer(keys, edge_screener, tokens)

    async def close() -> None:
        await audit.close()
        await authorizer.close()
        await keys.close()

    return ServiceSpec(
        name="security",
        listen=config.listen,
        registrars=(
            lambda server: security_service_pb2_grpc.add_SecurityServiceServicer_to_server(screening, server),
            lambda server: external_auth_pb2_grpc.add_AuthorizationServicer_to_server(edge, server),
        ),
        service_names=SERVICE_NAMES,
        metrics_port=config.metrics_port,
        drain_s=config.drain_s,
        on_stop=(close,),
    )
