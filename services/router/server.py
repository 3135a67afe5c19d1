"""Wiring of the router process: catalog, clients, pipeline and servicers."""

from __future__ import annotations

from pathlib import Path

from aigateway.chat.v1 import chat_service_pb2, chat_service_pb2_grpc
from aigateway.router.v1 import router_service_pb2, router_service_pb2_grpc

from libs.grpcserver import ServiceSpec
from services.router import upstream
from services.router.catalog import Catalog
from services.router.clients import CacheClient, MeteringClient, SecurityClient
from services.router.config import RouterConfig
from services.router.health import HealthTracker, InMemoryHealth, RedisHealth
from services.router.pipeline import Pipeline
from services.router.routing import Router
from services.router.service import ChatServicer, RouterServicer
from services.router.spool import SettlementSpool

SERVICE_NAMES = (
    router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name,
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
)


def build_pipeline(config: RouterConfig) -> tuple[ServiceSpec, Pipeline]:
    """Return the server spec and the pipeline it serves."""
    catalog = Catalog.load(config.catalog_path)
    security = SecurityClient(config.security_address)
    linger_s = config.batch_linger_ms / 1000
    cache = (
        CacheClient(
            config.cache_address, linger_s=linger_s, digest_refresh_s=config.cache_digest_refresh_ms / 1000
        )
        if config.cache_address
        else None
    )
    spool = SettlementSpool(Path(config.spool_dir)) if config.spool_dir else None
    metering = MeteringClient(config.metering_address, linger_s=linger_s, spool=spool)
    health: HealthTracker
    if config.redis_url:
        health = RedisHealth.from_url(config.redis_url, config.breaker, key_prefix=config.health_key_prefix)
    else:
        health = InMemoryHealth(config.breaker)
    router = Router(catalog, health=health, retry=config.retry)
    pipeline = Pipeline(catalog, router, security, cache, metering, semantic_cache=config.semantic_cache)

    async def close() -> None:
        await pipeline.drain()
        await metering.close()
        await security.close()
        if cache is not None:
            await cache.close()
        await upstream.close_session()
        if isinstance(health, RedisHealth):
            await health.close()

    spec = ServiceSpec(
        name="router",
        listen=config.listen,
        registrars=(
            lambda server: router_service_pb2_grpc.add_RouterServiceServicer_to_server(
                RouterServicer(pipeline), server
            ),
            lambda server: chat_service_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(pipeline), server),
        ),
        service_names=SERVICE_NAMES,
        metrics_port=config.metrics_port,
        drain_s=config.drain_s,
        on_stop=(close,),
    )
    return spec, pipeline


async def build(config: RouterConfig) -> ServiceSpec:
    """Return the server spec; the catalog is read here, so a bad one fails at start.

    Settlements an earlier router left in the spool are queued for metering here.
    """
    spec, pipeline = build_pipeline(config)
    pipeline.metering.recover()
    return spec
