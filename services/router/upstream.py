"""The router's one HTTP client session toward providers, with a keep-alive pool.

Every adapter borrows the same ``aiohttp.ClientSession`` so that connections to a
provider are reused across requests. The session is created on first use inside the
running event loop and closed by :func:`close_session` at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

__all__ = ["PoolSettings", "close_session", "configure_pool", "get_session"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSettings:
    """Sizes of the connection pool toward providers."""

    max_connections: int = 1000
    """Open connections across all providers; further requests wait for a free one."""
    max_connections_per_host: int = 256
    """Open connections to one host and port."""
    keepalive_s: float = 30.0
    """How long an idle connection stays in the pool."""
    connect_timeout_s: float = 10.0
    """Upper bound on opening a connection, inside each attempt's own timeout."""
    dns_cache_s: int = 300


_settings = PoolSettings()
_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None


def configure_pool(settings: PoolSettings) -> None:
    """Set the pool sizes; takes effect for the next session created."""
    global _settings
    _settings = settings


async def get_session() -> aiohttp.ClientSession:
    """Return the shared session, creating it in the running loop when needed."""
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is not None and not _session.closed and _session_loop is loop:
        return _session

    connector = aiohttp.TCPConnector(
        limit=_settings.max_connections,
        limit_per_host=_settings.max_connections_per_host,
        keepalive_timeout=_settings.keepalive_s,
        ttl_dns_cache=_settings.dns_cache_s,
    )
    _session = aiohttp.ClientSession(
        connector=connector,
        # Each attempt sets its own deadline; only connecting has a pool-wide bound.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=_settings.connect_timeout_s),
        # Proxies from the environment are not applied to provider traffic by accident.
        trust_env=False,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "aigateway-router"},
    )
    _session_loop = loop
    logger.debug(
        "created upstream session: max_connections=%d per_host=%d",
        _settings.max_connections,
        _settings.max_connections_per_host,
    )
    return _session


async def close_session() -> None:
    """Close the shared session and its connections; safe to call when none exists."""
    global _session, _session_loop
    session, _session, _session_loop = _session, None, None
    if session is not None and not session.closed:
        await session.close()
