"""Router settings, read once from ``ROUTER_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.config import Env

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
            log_level=env.str("LOG_LEVEL", "INFO"),
        )
