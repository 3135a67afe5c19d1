"""The cache's key digest: which keys may have a live entry, for ``GetKeyDigest``.

Items go into the filter of the current time window before their entry is written, so
no reader sees an entry whose items it lacks. A Bloom filter cannot forget an item, so
filters are kept per window of one entry lifetime (``ttl_s``). An entry stored in window
``w`` expires by the end of window ``w + 1``, and the served filter is the union of the
current and the previous window. Expired and invalidated entries only add false
positives.

The filters live where the exact cache lives: in this process, or in Redis as bitmaps
(``SETBIT``) that every replica writes and reads. The semantic store in PostgreSQL
outlives both, so the scopes with live rows are also read from it at start and every
``SCOPE_REFRESH_S``. In process mode, a scope written through another replica shows
after that delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from libs.keydigest import HASH_COUNT, KeyDigest, check_shape, item_bits, scope_item
from services.cache.store import CacheUnavailableError, SemanticStore

logger = logging.getLogger(__name__)

SCOPE_REFRESH_S = 30.0
"""Seconds between reads of the live semantic scopes from PostgreSQL."""


class DigestKeeper:
    """Adds items to the windowed filters and builds the filter that ``GetKeyDigest`` serves."""

    def __init__(
        self,
        *,
        ttl_s: int,
        bit_count: int,
        redis: redis_asyncio.Redis | None = None,
        prefix: str = "aigw:cache:",
        semantic: SemanticStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_shape(bit_count, HASH_COUNT)
        self.ttl_s = ttl_s
        self.bit_count = bit_count
        self.redis = redis
        self.prefix = prefix
        self.semantic = semantic
        self.clock = clock
        self._windows: dict[int, KeyDigest] = {}
        self._scopes: KeyDigest | None = None
        self._scopes_task: asyncio.Task[None] | None = None
        self._scopes_read = asyncio.Event()

    def _window(self) -> int:
        return int(self.clock() // self.ttl_s)

    def _redis_key(self, window: int) -> str:
        # The bit count is part of the name, so replicas started with another size never
        # read each other's bitmaps as their own.
        return f"{self.prefix}digest:{self.bit_count}:{window}"

    async def add(self, items: Iterable[bytes]) -> None:
        """Set the bits of ``items`` in the current window.

        Raises CacheUnavailableError when Redis fails.
        """
        window = self._window()
        if self.redis is None:
            digest = self._windows.get(window)
            if digest is None:
                digest = self._windows[window] = KeyDigest(self.bit_count, HASH_COUNT)
                for old in [w for w in self._windows if w < window - 1]:
                    del self._windows[old]
            for item in items:
                digest.add(item)
            return
        key = self._redis_key(window)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in items:
                    for n in item_bits(item, self.bit_count, HASH_COUNT):
                        pipe.setbit(key, n, 1)
                # Kept through the next window, whose readers still need it.
                pipe.expire(key, 2 * self.ttl_s + 60)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError("Redis SETBIT for the key digest failed", backend="redis") from exc

    async def snapshot(self) -> KeyDigest:
        """Return the union of the current and previous windows and the live scopes."""
        window = self._window()
        digest = KeyDigest(self.bit_count, HASH_COUNT)
        if self.redis is None:
            for w in (window - 1, window):
                part = self._windows.get(w)
                if part is not None:
                    digest.union(part.bits)
        else:
            try:
                parts = await self.redis.mget(self._redis_key(window - 1), self._redis_key(window))
            except (RedisError, OSError) as exc:
                raise CacheUnavailableError("Redis GET of the key digest failed", backend="redis") from exc
            for part in parts:
                if part:
                    digest.union(bytes(part))
        if self.semantic is not None:
            if self._scopes_task is None:
                self._scopes_task = asyncio.get_running_loop().create_task(self._refresh_scopes())
            # Until the scopes are read, the filter would lack every scope stored before
            # this process started, so the first calls wait for the first read.
            await self._scopes_read.wait()
            if self._scopes is None:
                raise CacheUnavailableError("the live semantic scopes could not be read", backend="postgres")
            digest.union(self._scopes.bits)
        return digest

    async def _load_scopes(self) -> None:
        assert self.semantic is not None
        try:
            scopes = await self.semantic.live_scopes()
        except CacheUnavailableError:
            # The last set read stays in use: it lacks only scopes that other replicas
            # created since, and semantic lookups fail while PostgreSQL is down anyway.
            logger.warning("could not read the live semantic scopes for the key digest")
            return
        digest = KeyDigest(self.bit_count, HASH_COUNT)
        for tenant, model, context_hash in scopes:
            digest.add(scope_item(tenant, model, context_hash))
        # Scopes stored here while the query ran are in the windows too, so none is lost.
        self._scopes = digest

    async def _refresh_scopes(self) -> None:
        while True:
            await self._load_scopes()
            self._scopes_read.set()
            # A failed first read is tried again after 1 s. A later failed read keeps the last set.
            await asyncio.sleep(SCOPE_REFRESH_S if self._scopes is not None else 1.0)

    async def close(self) -> None:
        """Stop the scope refresh."""
        if self._scopes_task is not None:
            self._scopes_task.cancel()
