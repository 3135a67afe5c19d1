"""Storage of cached responses: the exact cache and the semantic cache.

``ExactCache`` keeps response bytes under the keys from ``keys.exact_key``, in Redis when
a URL is given and otherwise in an LRU inside this process (right for one replica).
``SemanticStore`` keeps prompts, their embeddings and responses in PostgreSQL with
pgvector, and finds the nearest cached prompts within one tenant, model and context.

Errors: both raise ``CacheUnavailableError`` (an ``UnavailableError``) when their backend
cannot be reached, so the caller can serve the request without the cache and log a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import redis.asyncio as redis_asyncio
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.exceptions import RedisError

from libs.cachekeys import tenant_of_key
from libs.errors import UnavailableError

logger = logging.getLogger(__name__)

EMBEDDING_DIMENSION = 384
"""Length of the vectors the semantic store accepts; fixed by the table's vector(384) column."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# pg_advisory_xact_lock key that serialises migrations when several replicas start at once.
_MIGRATION_LOCK_ID = 0x61696777_63616368  # "aigw" "cach" in ASCII


class CacheUnavailableError(UnavailableError):
    """Redis or PostgreSQL could not be reached or failed; serve without the cache.

    The message is shown to clients, so it names only the operation; the driver's error
    is the exception's ``__cause__``.
    """

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message, reason="CACHE_UNAVAILABLE", metadata={"backend": backend})


# --- exact cache --------------------------------------------------------------------------


class ExactCache:
    """Response bytes by exact request key, with a TTL and invalidation per tenant.

    Keys must come from ``keys.exact_key`` (``<tenant>:<sha256 hex>``), because the tenant
    part feeds the per-tenant index that ``delete_tenant`` uses.
    """

    def __init__(self, backend: _RedisBackend | _MemoryBackend) -> None:
        self._backend = backend

    @classmethod
    async def open(
        cls,
        redis_url: str | None,
        *,
        ttl_s: int,
        max_entries: int = 10000,
        prefix: str = "aigw:cache:",
        timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> ExactCache:
        """Connect to Redis at ``redis_url``, or keep entries in this process when it is None.

        ``ttl_s`` is the lifetime of an entry in seconds. ``max_entries`` bounds only the
        in-process LRU; Redis applies its own eviction policy. ``prefix`` starts every Redis
        key. ``timeout_s`` bounds each Redis call. ``clock`` (seconds) serves tests of the
        in-process TTL. Raises CacheUnavailableError when Redis does not respond to PING.
        """
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        if redis_url is None:
            if max_entries <= 0:
                raise ValueError(f"max_entries must be positive, got {max_entries}")
            return cls(_MemoryBackend(ttl_s=ttl_s, max_entries=max_entries, clock=clock))

        client = redis_asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise CacheUnavailableError(
                "Redis for the exact cache did not respond to PING", backend="redis"
            ) from exc
        return cls(_RedisBackend(client, ttl_s=ttl_s, prefix=prefix))

    @property
    def backend(self) -> str:
        """``redis`` or ``memory``."""
        return self._backend.name

    @property
    def redis(self) -> redis_asyncio.Redis | None:
        """Redis client shared with the key digest, or None when entries are kept in process."""
        return self._backend.client if isinstance(self._backend, _RedisBackend) else None

    async def get(self, key: str) -> bytes | None:
        """Return the cached response for ``key``, or None when absent or expired."""
        return await self._backend.get(key)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` for the TTL, replacing any earlier value.

        Raises InvalidCacheKeyError when the key does not come from ``keys.exact_key``.
        """
        await self._backend.set(key, tenant_of_key(key), value)

    async def delete_tenant(self, tenant: str) -> int:
        """Delete every entry of ``tenant`` and return how many were deleted."""
        return await self._backend.delete_tenant(tenant)

    async def close(self) -> None:
        """Release the Redis connections, or drop the in-process entries."""
        await self._backend.close()


@dataclass
class _MemoryEntry:
    value: bytes
    tenant: str
    expires_at: float


class _MemoryBackend:
    """An LRU of at most ``max_entries`` entries in this process; every call is O(1)."""

    name = "memory"

    def __init__(self, *, ttl_s: int, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _MemoryEntry] = OrderedDict()
        self._keys_by_tenant: dict[str, set[str]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, tenant: str, value: bytes) -> None:
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _MemoryEntry(bytes(value), tenant, self._clock() + self._ttl_s)
        self._keys_by_tenant.setdefault(tenant, set()).add(key)
        while len(self._entries) > self._max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def delete_tenant(self, tenant: str) -> int:
        keys = self._keys_by_tenant.pop(tenant, set())
        now = self._clock()
        deleted = 0
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is not None and entry.expires_at > now:
                deleted += 1
        return deleted

    async def close(self) -> None:
        self._entries.clear()
        self._keys_by_tenant.clear()

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        keys = self._keys_by_tenant.get(entry.tenant)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_by_tenant[entry.tenant]


class _RedisBackend:
    """Entries as Redis strings with EX; per tenant, a sorted set of keys scored by expiry.

    Scoring the index by expiry lets each write trim the keys that have expired, so the
    index of a busy tenant holds only live keys.
    """

    name = "redis"
    _DELETE_BATCH = 500

    def __init__(self, client: redis_asyncio.Redis, *, ttl_s: int, prefix: str) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._prefix = prefix

    @property
    def client(self) -> redis_asyncio.Redis:
        """The Redis client of the entries."""
        return self._client

    def _entry_key(self, key: str) -> str:
        return f"{self._prefix}e:{key}"

    def _index_key(self, tenant: str) -> str:
        return f"{self._prefix}t:{tenant}"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self._entry_key(key))
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(
                "Redis GET for the exact cache failed", backend="redis"
            ) from exc
        return bytes(value) if value is not None else None

    async def set(self, key: str, tenant: str, value: bytes) -> None:
        now = time.time()
        index = self._index_key(tenant)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._entry_key(key), value, ex=self._ttl_s)
                pipe.zadd(index, {key: now + self._ttl_s})
                pipe.zremrangebyscore(index, "-inf", now)
                # The newest entry outlives all others, so the index may expire with it.
                pipe.expire(index, self._ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(
                "Redis SET for the exact cache failed", backend="redis"
            ) from exc

    async def delete_tenant(self, tenant: str) -> int:
        index = self._index_key(tenant)
        deleted = 0
        try:
            while True:
                keys = await self._client.zrange(index, 0, self._DELETE_BATCH - 1)
                if not keys:
                    break
                names = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.unlink(*(self._entry_key(name) for name in names))
                    pipe.zrem(index, *names)
                    removed, _ = await pipe.execute()
                deleted += int(removed)
            await self._client.unlink(index)
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(
                "Redis delete of a tenant's exact cache entries failed", backend="redis"
            ) from exc
        return deleted

    async def close(self) -> None:
        await self._client.aclose()


# --- semantic store -----------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticHit:
    """A cached entry near the new prompt; ``semantic.decide`` decides whether to serve it."""

    response: bytes
    """The cached response bytes."""
    similarity: float
    """Cosine similarity of the cached and the new prompt's embeddings, in [-1, 1]."""
    cached_prompt: str
    """The prompt the response was cached for."""
    entry_id: int
    """Row id of the entry."""


class SemanticStore:
    """Cached responses found by prompt embedding, in PostgreSQL with pgvector.

    Every search is filtered exactly by tenant, model and context hash in SQL, so an entry
    of another scope is never returned, however near its vector is. pgvector's HNSW index
    applies the filter after the approximate scan. Iterative index scans (pgvector 0.8)
    keep scanning until enough rows pass the filter, so a small scope in a large table is
    still found.
    """

    def __init__(self, pool: AsyncConnectionPool, *, ttl_s: int) -> None:
        self._pool = pool
        self._ttl_s = ttl_s

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        ttl_s: int,
        min_connections: int = 1,
        max_connections: int = 10,
        timeout_s: float = 5.0,
        ef_search: int = 64,
    ) -> SemanticStore:
        """Open a connection pool to ``database_url`` and apply the migrations.

        ``ttl_s`` is the lifetime of an entry in seconds. ``timeout_s`` bounds the wait for
        a connection and each statement. ``ef_search`` is the HNSW candidate list size
        (pgvector's ``hnsw.ef_search``; higher finds more true neighbours, slower). The
        migrations are idempotent and serialised by an advisory lock. Raises
        CacheUnavailableError when the database cannot be reached.
        """
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        statement_timeout_ms = int(timeout_s * 1000)

        async def configure(conn: psycopg.AsyncConnection) -> None:
            await conn.set_autocommit(True)
            await register_vector_async(conn)
            await conn.execute(f"SET statement_timeout = {statement_timeout_ms}")
            await conn.execute("SET hnsw.iterative_scan = 'relaxed_order'")
            await conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")

        try:
            await _migrate(database_url, timeout_s)
        except (psycopg.Error, OSError) as exc:
            raise CacheUnavailableError(
                "semantic cache database migration failed", backend="postgres"
            ) from exc

        pool = AsyncConnectionPool(
            database_url,
            min_size=min_connections,
            max_size=max_connections,
            timeout=timeout_s,
            configure=configure,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=timeout_s)
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            await pool.close()
            raise CacheUnavailableError(
                "semantic cache database is unreachable", backend="postgres"
            ) from exc
        return cls(pool, ttl_s=ttl_s)

    async def search(
        self, tenant: str, model: str, context_hash: str, embedding: np.ndarray, limit: int = 5
    ) -> list[SemanticHit]:
        """Return up to ``limit`` live entries of this tenant, model and context, nearest first."""
        vector = _checked_embedding(embedding)
        limit = max(1, min(int(limit), 100))
        # relaxed_order may return rows slightly out of distance order; the outer query sorts them.
        query = """
            WITH nearest AS MATERIALIZED (
                SELECT id, prompt, response, embedding <=> %(vector)s AS distance
                FROM semantic_cache_entries
                WHERE tenant = %(tenant)s AND model = %(model)s AND context_hash = %(context)s
                  AND expires_at > now()
                ORDER BY embedding <=> %(vector)s
                LIMIT %(limit)s
            )
            SELECT id, prompt, response, distance FROM nearest ORDER BY distance, id
        """
        params = {
            "vector": vector,
            "tenant": tenant,
            "model": model,
            "context": context_hash,
            "limit": limit,
        }
        try:
            async with self._pool.connection() as conn:
                rows = await (await conn.execute(query, params)).fetchall()
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise CacheUnavailableError("semantic cache search failed", backend="postgres") from exc
        return [
            SemanticHit(
                response=bytes(response),
                similarity=1.0 - float(distance),
                cached_prompt=prompt,
                entry_id=int(id_),
            )
            for id_, prompt, response, distance in rows
        ]

    async def has_live_entries(self, tenant: str, model: str, context_hash: str) -> bool:
        """Return whether this tenant, model and context has at least one unexpired entry.

        One probe of the scope index. A lookup that gets False can skip embedding its
        prompt, because ``search`` would return nothing.
        """
        query = """
            SELECT EXISTS (
                SELECT 1 FROM semantic_cache_entries
                WHERE tenant = %s AND model = %s AND context_hash = %s AND expires_at > now()
            )
        """
        try:
            async with self._pool.connection() as conn:
                row = await (await conn.execute(query, (tenant, model, context_hash))).fetchone()
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise CacheUnavailableError("semantic cache scope check failed", backend="postgres") from exc
        return bool(row and row[0])

    async def live_scopes(self) -> list[tuple[str, str, str]]:
        """Return every (tenant, model, context hash) with at least one unexpired entry."""
        query = "SELECT DISTINCT tenant, model, context_hash FROM semantic_cache_entries WHERE expires_at > now()"
        try:
            async with self._pool.connection() as conn:
                rows = await (await conn.execute(query)).fetchall()
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise CacheUnavailableError("semantic cache scope listing failed", backend="postgres") from exc
        return [(str(tenant), str(model), str(context_hash)) for tenant, model, context_hash in rows]

    async def add(
        self,
        tenant: str,
        model: str,
        context_hash: str,
        prompt: str,
        embedding: np.ndarray,
        response: bytes,
    ) -> int:
        """Store ``response`` for ``prompt`` with the store's TTL and return the new entry's id."""
        vector = _checked_embedding(embedding)
        query = """
            INSERT INTO semantic_cache_entries
                (tenant, model, context_hash, prompt, embedding, response, expires_at)
            VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))
            RETURNING id
        """
        params = (tenant, model, context_hash, prompt, vector, bytes(response), self._ttl_s)
        try:
            async with self._pool.connection() as conn:
                row = await (await conn.execute(query, params)).fetchone()
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise CacheUnavailableError("semantic cache insert failed", backend="postgres") from exc
        assert row is not None  # INSERT ... RETURNING returns one row
        return int(row[0])

    async def delete_tenant(self, tenant: str) -> int:
        """Delete every entry of ``tenant``, expired or not, and return how many rows went."""
        return await self._delete("DELETE FROM semantic_cache_entries WHERE tenant = %s", (tenant,))

    async def purge_expired(self, batch: int = 10000) -> int:
        """Delete up to ``batch`` expired entries and return how many were deleted.

        Searches already skip expired rows; this only reclaims their space. Run it
        periodically.
        """
        query = """
            DELETE FROM semantic_cache_entries WHERE id IN (
                SELECT id FROM semantic_cache_entries WHERE expires_at <= now() LIMIT %s
            )
        """
        return await self._delete(query, (batch,))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._pool.close()

    async def _delete(self, query: str, params: tuple[object, ...]) -> int:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise CacheUnavailableError("semantic cache delete failed", backend="postgres") from exc
        return max(cursor.rowcount, 0)


def _checked_embedding(embedding: np.ndarray) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape != (EMBEDDING_DIMENSION,):
        raise ValueError(
            f"embedding must have {EMBEDDING_DIMENSION} values, got shape {np.shape(embedding)}"
        )
    if not np.all(np.isfinite(vector)):
        raise ValueError("embedding contains NaN or infinite values")
    return vector


async def _migrate(database_url: str, timeout_s: float) -> None:
    """Apply the SQL files in MIGRATIONS_DIR that the database has not seen, in name order."""
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    async with await asyncio.wait_for(
        psycopg.AsyncConnection.connect(database_url), timeout_s
    ) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS cache_schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                row[0]
                for row in await (
                    await conn.execute("SELECT version FROM cache_schema_migrations")
                ).fetchall()
            }
            for path in files:
                if path.stem in applied:
                    continue
                await conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO cache_schema_migrations (version) VALUES (%s)", (path.stem,)
                )
                logger.info("applied cache migration", extra={"migration": path.stem})
