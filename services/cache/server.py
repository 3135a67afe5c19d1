"""Wiring of the cache process: stores, embedding model and servicer."""

from __future__ import annotations

import logging

from aigateway.cache.v1 import cache_service_pb2, cache_service_pb2_grpc

from libs.grpcserver import ServiceSpec
from services.cache.config import CacheConfig
from services.cache.digest import DigestKeeper
from services.cache.embeddings import Embedder
from services.cache.service import CacheServicer, EmbeddingCache
from services.cache.store import ExactCache, SemanticStore

logger = logging.getLogger(__name__)

SERVICE_NAMES = (cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name,)


async def build(config: CacheConfig) -> ServiceSpec:
    """Open the stores, load the embedding model and return the server spec."""
    exact = await ExactCache.open(config.redis_url, ttl_s=config.ttl_s, max_entries=config.max_entries)
    semantic = None
    embeddings = None
    if config.database_url:
        semantic = await SemanticStore.open(config.database_url, ttl_s=config.ttl_s)
        embeddings = EmbeddingCache(Embedder.load(threads=config.embedding_threads, runtime=config.embedding_runtime))
    else:
        logger.warning(
            "the semantic cache is off because CACHE_DATABASE_URL is not set;"
            " set it to a PostgreSQL URL with pgvector to turn it on"
        )
    digest = DigestKeeper(ttl_s=config.ttl_s, bit_count=config.digest_bits, redis=exact.redis, semantic=semantic)
    servicer = CacheServicer(exact, semantic, embeddings, digest)

    async def close() -> None:
        await digest.close()
        await exact.close()
        if semantic is not None:
            await semantic.close()

    return ServiceSpec(
        name="cache",
        listen=config.listen,
        registrars=(lambda server: cache_service_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server),),
        service_names=SERVICE_NAMES,
        metrics_port=config.metrics_port,
        drain_s=config.drain_s,
        on_stop=(close,),
    )
