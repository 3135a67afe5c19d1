"""Cache service settings, read once from ``CACHE_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from libs.config import ConfigError, Env
from libs.keydigest import HASH_COUNT, check_shape

RUNTIMES = ("onnxruntime", "numpy")
"""Runtimes that can run the embedding model's encoder layers (``CACHE_EMBEDDING_RUNTIME``)."""


@dataclass(frozen=True)
class CacheConfig:
    """Settings of the cache process."""

    listen: str
    """``host:port`` of the gRPC server (``CACHE_LISTEN``)."""
    metrics_port: int | None
    """Prometheus port on 127.0.0.1 (``CACHE_METRICS_PORT``); 0 disables it."""
    database_url: str | None
    """PostgreSQL URL with pgvector for the semantic cache (``CACHE_DATABASE_URL``);
    unset disables the semantic cache."""
    redis_url: str | None
    """Redis URL for the exact cache (``CACHE_REDIS_URL``); unset keeps it in process."""
    ttl_s: int
    """Seconds an entry lives (``CACHE_TTL_S``, default one day)."""
    max_entries: int
    """Entries the in-process exact cache keeps (``CACHE_MAX_ENTRIES``)."""
    digest_bits: int
    """Size in bits of the key digest that lets routers skip Lookups that must miss
    (``CACHE_DIGEST_BITS``, default 2**20: 128 KiB, about 1% false positives at 100,000
    live entries). A power of two from 1,024 to 2**32."""
    embedding_threads: int
    """Threads of the embedding runtime (``CACHE_EMBEDDING_THREADS``, default 1; 0 uses
    the CPUs the process may run on, at most 4). Lookups
    embed one prompt at a time, and on a busy host a second thread waiting for a core made
    the 99th percentile of one embedding 20 times slower."""
    embedding_runtime: str
    """Runtime of the embedding model's encoder (``CACHE_EMBEDDING_RUNTIME``):
    ``onnxruntime`` (default, about three times faster for one prompt) or ``numpy``, for
    platforms without an ONNX Runtime wheel. Both give the same vectors to about 1e-7."""
    drain_s: float
    """Seconds between NOT_SERVING and stop on SIGTERM (``CACHE_DRAIN_S``)."""
    log_level: str
    """Log level (``CACHE_LOG_LEVEL``)."""

    @classmethod
    def from_env(cls, env: Env | None = None) -> CacheConfig:
        """Read the settings; raise ConfigError naming the variable on a bad value."""
        env = env or Env("CACHE")
        metrics_port = env.int("METRICS_PORT", 9103)
        return cls(
            listen=env.address("LISTEN", "127.0.0.1:50053"),
            metrics_port=metrics_port or None,
            database_url=env.optional("DATABASE_URL"),
            redis_url=env.optional("REDIS_URL"),
            ttl_s=env.int("TTL_S", 86_400),
            max_entries=env.int("MAX_ENTRIES", 10_000),
            digest_bits=_digest_bits(env),
            embedding_threads=env.int("EMBEDDING_THREADS", 1),
            embedding_runtime=_embedding_runtime(env),
            drain_s=env.float("DRAIN_S", 5.0),
            log_level=env.str("LOG_LEVEL", "INFO"),
        )


def _digest_bits(env: Env) -> int:
    bits = env.int("DIGEST_BITS", 1 << 20)
    try:
        check_shape(bits, HASH_COUNT)
    except ValueError:
        raise ConfigError(
            f"{env.name('DIGEST_BITS')}={bits} is not a power of two from 1024 to 4294967296: "
            "use, for example, 1048576 or 8388608"
        ) from None
    return bits


def _embedding_runtime(env: Env) -> str:
    runtime = env.str("EMBEDDING_RUNTIME", "onnxruntime")
    if runtime not in RUNTIMES:
        raise ConfigError(f"{env.name('EMBEDDING_RUNTIME')}={runtime!r} is invalid: use {' or '.join(RUNTIMES)}")
    return runtime
