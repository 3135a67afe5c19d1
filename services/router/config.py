"""Router settings, read once from ``ROUTER_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.config import ConfigError, Env
from services.router.health import BreakerSettings
from services.router.routing import RetryPolicy

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "deploy" / "catalog" / "demo.yaml"


@dataclass(frozen=True)
class RouterConfig:
    """Settings of the router process."""

    listen: str
    """``host:port`` of the gRPC server (``ROUTER_LISTEN``)."""
    metrics_port: int | None
    """Prometheus port on 127.0.0.1 (``ROUTER_METRICS_PORT``); 0 disables it."""
    catalog_path: Path
    """The model catalog YAML (``ROUTER_CATALOG``)."""
    security_address: str
    """``host:port`` of the security service (``ROUTER_SECURITY_ADDR``)."""
    cache_address: str | None
    """``host:port`` of the cache service (``ROUTER_CACHE_ADDR``); unset disables caching."""
    metering_address: str
    """``host:port`` of the metering service (``ROUTER_METERING_ADDR``)."""
    semantic_cache: bool
    """Whether the semantic cache may answer (``ROUTER_SEMANTIC_CACHE``, default true)."""
    drain_s: float
    """Seconds between NOT_SERVING and stop on SIGTERM (``ROUTER_DRAIN_S``)."""
    log_level: str
    """Log level (``ROUTER_LOG_LEVEL``)."""
    redis_url: str | None = None
    """Redis that keeps deployment health for every replica (``ROUTER_REDIS_URL``); unset
    keeps it in this process."""
    spool_dir: str | None = None
    """Directory where settlements wait on disk until metering has them
    (``ROUTER_SPOOL_DIR``). A restarted router sends what is left there. Unset keeps them
    in memory only, where a stopped router loses the undelivered ones. One router
    replica per directory."""
    batch_linger_ms: float = 25.0
    """Milliseconds that usage settlements and cache stores wait for others to share a call
    (``ROUTER_BATCH_LINGER_MS``, 0 to 1000; 0 sends each at once when the queue is idle)."""
    cache_digest_refresh_ms: float = 1000.0
    """Milliseconds between reads of the cache's key digest, with which the router skips
    Lookups that must miss (``ROUTER_CACHE_DIGEST_REFRESH_MS``, 100 to 60000, or 0 to
    look every request up). This router's Lookups find another router's store after at
    most this long, and its own at once."""
    health_key_prefix: str = "aigw:router:health:"
    """Prefix of the Redis keys of deployment health (``ROUTER_HEALTH_KEY_PREFIX``)."""
    breaker: BreakerSettings = BreakerSettings()
    """Circuit breaker settings (``ROUTER_BREAKER_*``)."""
    retry: RetryPolicy = RetryPolicy()
    """Attempt and round limits, backoff and deadline of each request
    (``ROUTER_MAX_ATTEMPTS``, ``ROUTER_RETRY_ROUNDS``, ``ROUTER_BACKOFF_BASE_S``,
    ``ROUTER_BACKOFF_MAX_S``, ``ROUTER_DEADLINE_S``)."""

    @classmethod
    def from_env(cls, env: Env | None = None) -> RouterConfig:
        """Read the settings; raise ConfigError naming the variable on a bad value."""
        env = env or Env("ROUTER")
        metrics_port = env.int("METRICS_PORT", 9101)
        return cls(
            listen=env.address("LISTEN", "127.0.0.1:50051"),
            metrics_port=metrics_port or None,
            catalog_path=Path(env.str("CATALOG", str(DEFAULT_CATALOG))),
            security_address=env.address("SECURITY_ADDR", "127.0.0.1:50052"),
            cache_address=env.optional("CACHE_ADDR") if env.optional("CACHE_ADDR") != "off" else None,
            metering_address=env.address("METERING_ADDR", "127.0.0.1:50054"),
            semantic_cache=env.bool("SEMANTIC_CACHE", True),
            drain_s=env.float("DRAIN_S", 5.0),
            batch_linger_ms=_batch_linger_ms(env),
            cache_digest_refresh_ms=_cache_digest_refresh_ms(env),
            log_level=env.str("LOG_LEVEL", "INFO"),
            redis_url=env.optional("REDIS_URL"),
            spool_dir=env.optional("SPOOL_DIR"),
            health_key_prefix=env.str("HEALTH_KEY_PREFIX", "aigw:router:health:"),
            breaker=_breaker_settings(env),
            retry=_retry_policy(env),
        )


def _breaker_settings(env: Env) -> BreakerSettings:
    defaults = BreakerSettings()
    settings = BreakerSettings(
        failure_threshold=env.int("BREAKER_FAILURES", defaults.failure_threshold),
        failure_rate=env.float("BREAKER_FAILURE_RATE", defaults.failure_rate),
        min_requests=env.int("BREAKER_MIN_REQUESTS", defaults.min_requests),
        window_s=env.float("BREAKER_WINDOW_S", defaults.window_s),
        cooldown_s=env.float("BREAKER_COOLDOWN_S", defaults.cooldown_s),
        max_cooldown_s=env.float("BREAKER_MAX_COOLDOWN_S", defaults.max_cooldown_s),
        half_open_probes=env.int("BREAKER_PROBES", defaults.half_open_probes),
        probe_timeout_s=env.float("BREAKER_PROBE_TIMEOUT_S", defaults.probe_timeout_s),
    )
    if settings.failure_threshold < 1:
        raise ConfigError(f"{env.name('BREAKER_FAILURES')} must be 1 or more, got {settings.failure_threshold}")
    if not 0 < settings.failure_rate <= 1:
        raise ConfigError(
            f"{env.name('BREAKER_FAILURE_RATE')} must be above 0 and at most 1, got {settings.failure_rate}"
        )
    if settings.half_open_probes < 1:
        raise ConfigError(f"{env.name('BREAKER_PROBES')} must be 1 or more, got {settings.half_open_probes}")
    return settings


def _retry_policy(env: Env) -> RetryPolicy:
    defaults = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=env.int("MAX_ATTEMPTS", defaults.max_attempts),
        # The service retries by default: a second walk over the deployments after a backoff.
        rounds=env.int("RETRY_ROUNDS", 2),
        backoff_base_s=env.float("BACKOFF_BASE_S", defaults.backoff_base_s),
        backoff_max_s=env.float("BACKOFF_MAX_S", defaults.backoff_max_s),
        deadline_s=env.float("DEADLINE_S", defaults.deadline_s),
    )
    if policy.max_attempts < 1:
        raise ConfigError(f"{env.name('MAX_ATTEMPTS')} must be 1 or more, got {policy.max_attempts}")
    if policy.rounds < 1:
        raise ConfigError(f"{env.name('RETRY_ROUNDS')} must be 1 or more, got {policy.rounds}")
    if policy.deadline_s <= 0:
        raise ConfigError(f"{env.name('DEADLINE_S')} must be greater than 0, got {policy.deadline_s}")
    return policy


def _batch_linger_ms(env: Env) -> float:
    value = env.float("BATCH_LINGER_MS", 25.0)
    if not 0 <= value <= 1000:
        raise ConfigError(f"{env.name('BATCH_LINGER_MS')} must be between 0 and 1000 milliseconds, got {value:g}")
    return value


def _cache_digest_refresh_ms(env: Env) -> float:
    value = env.float("CACHE_DIGEST_REFRESH_MS", 1000.0)
    if value != 0 and not 100 <= value <= 60_000:
        raise ConfigError(
            f"{env.name('CACHE_DIGEST_REFRESH_MS')} must be 0 (off) or between 100 and 60000 "
            f"milliseconds, got {value:g}"
        )
    return value
