"""Security service settings, read once from ``SECURITY_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.config import ConfigError, Env
from services.security.jwt_auth import JwtSettings


@dataclass(frozen=True)
class SecurityConfig:
    """Settings of the security process."""

    listen: str
    """``host:port`` of the gRPC server (``SECURITY_LISTEN``)."""
    metrics_port: int | None
    """Prometheus port on 127.0.0.1 (``SECURITY_METRICS_PORT``); 0 disables it."""
    database_url: str
    """PostgreSQL URL for API keys and the audit log (``SECURITY_DATABASE_URL``)."""
    cerbos_address: str
    """``host:port`` of the Cerbos PDP's gRPC listener (``SECURITY_CERBOS_ADDR``)."""
    key_cache_ttl_s: float
    """Seconds a verified or rejected key is remembered (``SECURITY_KEY_CACHE_TTL_S``);
    a revocation takes effect within this time."""
    policy_cache_ttl_s: float
    """Seconds a Cerbos decision is reused for the same key, model and attributes
    (``SECURITY_POLICY_CACHE_TTL_S``, default 5; 0 sends every check to the PDP). A policy
    change takes effect within this time."""
    catalog_path: str | None
    """The router's model catalog (``SECURITY_CATALOG``). With it, chat prompts whose body
    comes with the ext_authz call are screened there, and the router skips ScreenPrompt
    for those that pass unchanged. Unset: the router screens every prompt."""
    jwt: JwtSettings | None
    """JSON Web Token authentication (``SECURITY_JWT_*``); None accepts API keys only."""
    drain_s: float
    """Seconds between NOT_SERVING and stop on SIGTERM (``SECURITY_DRAIN_S``)."""
    log_level: str
    """Log level (``SECURITY_LOG_LEVEL``)."""

    @classmethod
    def from_env(cls, env: Env | None = None) -> SecurityConfig:
        """Read the settings; raise ConfigError naming the variable on a bad value."""
        env = env or Env("SECURITY")
        metrics_port = env.int("METRICS_PORT", 9102)
        return cls(
            listen=env.address("LISTEN", "127.0.0.1:50052"),
            metrics_port=metrics_port or None,
            database_url=env.str("DATABASE_URL"),
            cerbos_address=env.address("CERBOS_ADDR", "127.0.0.1:3593"),
            key_cache_ttl_s=env.float("KEY_CACHE_TTL_S", 30.0),
            policy_cache_ttl_s=env.float("POLICY_CACHE_TTL_S", 5.0),
            catalog_path=env.optional("CATALOG"),
            jwt=_jwt_settings(env),
            drain_s=env.float("DRAIN_S", 5.0),
            log_level=env.str("LOG_LEVEL", "INFO"),
        )


def _jwt_settings(env: Env) -> JwtSettings | None:
    jwks = env.optional("JWT_JWKS")
    if not jwks:
        return None
    if jwks.startswith("http://"):
        raise ConfigError(
            f"{env.name('JWT_JWKS')}={jwks!r} is plain HTTP, where anyone on the path could swap the keys: "
            "use the provider's https:// URL or a file"
        )
    if not jwks.startswith("https://") and not Path(jwks).is_file():
        raise ConfigError(f"{env.name('JWT_JWKS')}={jwks!r} is neither a file nor an https:// URL")
    issuer, audience = env.optional("JWT_ISSUER"), env.optional("JWT_AUDIENCE")
    if not issuer or not audience:
        raise ConfigError(
            f"{env.name('JWT_JWKS')} is set, so {env.name('JWT_ISSUER')} and {env.name('JWT_AUDIENCE')} "
            "must be set too: the issuer and audience a token must name"
        )
    refresh_s = env.float("JWT_REFRESH_S", 300.0)
    if refresh_s <= 0:
        raise ConfigError(f"{env.name('JWT_REFRESH_S')} must be greater than 0, got {refresh_s:g}")
    return JwtSettings(
        jwks=jwks,
        issuer=issuer,
        audience=audience,
        tenant_claim=env.str("JWT_TENANT_CLAIM", "tenant"),
        roles_claim=env.str("JWT_ROLES_CLAIM", "roles"),
        models_claim=env.str("JWT_MODELS_CLAIM", "models"),
        refresh_s=refresh_s,
    )
