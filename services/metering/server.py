"""Wiring of the metering process: ledger, budget and rate-limit stores, servicer."""

from __future__ import annotations

import logging

import psycopg
from aigateway.metering.v1 import metering_service_pb2 as pb
from aigateway.metering.v1 import metering_service_pb2_grpc as pb_grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError

from libs.grpcserver import ServiceSpec
from services.metering.budgets import Budgets, BudgetStore, LocalBudgetStore, RedisBudgetStore
from services.metering.config import MeteringConfig
from services.metering.ledger import Ledger
from services.metering.ratelimits import (
    LocalRateLimitStore,
    RateLimiter,
    RateLimits,
    RateLimitStore,
    RedisRateLimitStore,
)
from services.metering.service import MeteringServicer

logger = logging.getLogger(__name__)

SERVICE_NAMES = (pb.DESCRIPTOR.services_by_name["MeteringService"].full_name,)

# Every Redis call has a deadline, so that Admit fails with UNAVAILABLE instead of hanging.
REDIS_TIMEOUT_S = 1.0


async def build(config: MeteringConfig) -> ServiceSpec:
    """Open the ledger (applying migrations) and the stores, and return the server spec."""
    ledger = Ledger(
        config.database_url,
        outbox_max_rows=config.outbox_max_rows,
        flush_timeout_s=config.flush_timeout_s,
    )
    try:
        await ledger.open()
    except psycopg.OperationalError as exc:
        logger.error(
            "could not open the ledger database",
            extra={"database": config.summary()["database"], "error": repr(exc)},
        )
        raise

    limits = RateLimits(config.rpm_limit, config.tpm_limit)
    redis: Redis | None = None
    budget_store: BudgetStore
    limit_store: RateLimitStore
    if config.redis_url:
        redis = Redis.from_url(
            config.redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,
        )
        await _check_redis(redis)
        budget_store = RedisBudgetStore(redis, config.redis_prefix, config.reservation_ttl_s)
        limit_store = RedisRateLimitStore(
            redis, config.redis_prefix, limits, config.reservation_ttl_s
        )
    else:
        budget_store = LocalBudgetStore(config.reservation_ttl_s)
        limit_store = LocalRateLimitStore(limits, config.reservation_ttl_s)

    budgets = Budgets(budget_store, ledger.spend)
    servicer = MeteringServicer(ledger, budgets, RateLimiter(limits, limit_store))

    async def close() -> None:
        await ledger.close()
        await budget_store.close()
        if redis is not None:
            await redis.aclose()

    return ServiceSpec(
        name="metering",
        listen=config.listen,
        registrars=(
            lambda server: pb_grpc.add_MeteringServiceServicer_to_server(servicer, server),
        ),
        service_names=SERVICE_NAMES,
        metrics_port=config.metrics_port,
        drain_s=config.drain_s,
        on_stop=(close,),
    )


async def _check_redis(redis: Redis) -> None:
    # Redis may come up after this service. Until it does, every Admit that needs Redis
    # (a budget or a rate limit) returns UNAVAILABLE.
    try:
        await redis.ping()
    except RedisError as exc:
        logger.warning(
            "Redis is unreachable at startup; budgets and rate limits fail until it is back",
            extra={"error": repr(exc)},
        )
