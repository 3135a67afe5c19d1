"""Settings of the metering service, read once from ``METERING_*`` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from libs.config import ConfigError, Env

ENV_PREFIX = "METERING"


@dataclass(frozen=True)
class MeteringConfig:
    """Settings of one metering process."""

    database_url: str
    """libpq URL or key=value string of the PostgreSQL database of the ledger."""
    listen: str = "127.0.0.1:50054"
    """``host:port`` of the gRPC listener; port 0 picks a free port."""
    metrics_port: int | None = 9104
    """Port of the Prometheus endpoint on 127.0.0.1; None disables it."""
    redis_url: str | None = None
    """Redis that shares budgets and rate limits between replicas; None keeps them in
    this process, which is right for a single replica."""
    redis_prefix: str = "aigw:metering:"
    """Prefix of every Redis key the service writes."""
    rpm_limit: int = 0
    """Requests per minute allowed per API key; 0 means unlimited."""
    tpm_limit: int = 0
    """Tokens per minute allowed per API key; 0 means unlimited."""
    reservation_ttl_s: float = 600.0
    """Seconds after which the reservation of an admitted request that was never
    settled expires and stops counting against the budget."""
    outbox_max_rows: int = 100_000
    """Maximum number of settlements kept in memory while the database is unreachable."""
    flush_timeout_s: float = 5.0
    """Seconds a shutdown spends writing the outbox before it logs the rows left and exits."""
    drain_s: float = 5.0
    """Seconds between reporting NOT_SERVING and closing the listener on shutdown."""
    log_level: str = "INFO"
    """Level of the root logger."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MeteringConfig:
        """Read the settings; raise ConfigError naming the variable that is missing or invalid."""
        env = Env(ENV_PREFIX, environ)
        metrics_port = env.int("METRICS_PORT", 9104)
        config = cls(
            database_url=env.str("DATABASE_URL"),
            listen=env.address("LISTEN", "127.0.0.1:50054"),
            metrics_port=metrics_port or None,
            redis_url=env.optional("REDIS_URL"),
            redis_prefix=env.str("REDIS_PREFIX", "aigw:metering:"),
            rpm_limit=env.int("RPM_LIMIT", 0),
            tpm_limit=env.int("TPM_LIMIT", 0),
            reservation_ttl_s=env.float("RESERVATION_TTL_S", 600.0),
            outbox_max_rows=env.int("OUTBOX_MAX_ROWS", 100_000),
            flush_timeout_s=env.float("FLUSH_TIMEOUT_S", 5.0),
            drain_s=env.float("DRAIN_S", 5.0),
            log_level=env.str("LOG_LEVEL", "INFO").upper(),
        )
        config._validate(env)
        return config

    def _validate(self, env: Env) -> None:
        try:
            conninfo_to_dict(self.database_url)
        except Exception:
            # The message of the parse error may quote the password, so it is not chained.
            raise ConfigError(f"{env.name('DATABASE_URL')} is not a valid PostgreSQL URL") from None
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                f"{env.name('REDIS_URL')} must start with redis://, rediss:// or unix://"
            )
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise ConfigError(
                f"{env.name('METRICS_PORT')}={self.metrics_port} is not a port: "
                "use 1-65535, or 0 to disable"
            )
        if self.rpm_limit < 0:
            raise ConfigError(
                f"{env.name('RPM_LIMIT')}={self.rpm_limit} is negative: use 0 for unlimited"
            )
        if self.tpm_limit < 0:
            raise ConfigError(
                f"{env.name('TPM_LIMIT')}={self.tpm_limit} is negative: use 0 for unlimited"
            )
        if not self.reservation_ttl_s > 0:
            raise ConfigError(
                f"{env.name('RESERVATION_TTL_S')}={self.reservation_ttl_s} must be greater than 0"
            )
        if self.outbox_max_rows < 1:
            raise ConfigError(
                f"{env.name('OUTBOX_MAX_ROWS')}={self.outbox_max_rows} must be at least 1"
            )
        if self.flush_timeout_s < 0:
            raise ConfigError(f"{env.name('FLUSH_TIMEOUT_S')}={self.flush_timeout_s} is negative")
        if self.drain_s < 0:
            raise ConfigError(f"{env.name('DRAIN_S')}={self.drain_s} is negative")
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(
                f"{env.name('LOG_LEVEL')}={self.log_level!r} is not a level: "
                "use DEBUG, INFO, WARNING or ERROR"
            )

    def summary(self) -> dict[str, Any]:
        """Return the settings for the startup log line, without passwords."""
        return {
            "listen": self.listen,
            "metrics_port": self.metrics_port,
            "database": _describe_database(self.database_url),
            "redis": _describe_redis(self.redis_url),
            "redis_prefix": self.redis_prefix if self.redis_url else None,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "reservation_ttl_s": self.reservation_ttl_s,
            "outbox_max_rows": self.outbox_max_rows,
            "flush_timeout_s": self.flush_timeout_s,
            "drain_s": self.drain_s,
        }


def _describe_database(url: str) -> str:
    params = conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or ''}"


def _describe_redis(url: str | None) -> str | None:
    if url is None:
        return None
    # Drop the user info (which may carry a password) and keep scheme, host, port and db.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
