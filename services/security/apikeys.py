"""API keys: creation, verification, listing and revocation, stored hashed in PostgreSQL.

A key reads ``sk-aigw-<public id>-<secret>``: 8 base62 characters that name the key in
logs, listings and the principal, then 40 random base62 characters (about 238 bits).
The database keeps the SHA-256 digest of the whole key, never the key. A fast hash is
enough because the secret is random and long, so no dictionary or brute-force attack
applies to it.

Verification looks the key up by its public id and compares digests in constant time.
Results, hits and misses alike, stay in an in-process cache for ``cache_ttl_s`` seconds,
so the hot path does not reach the database on every request. A revocation therefore
takes effect at once in the process that revokes and within ``cache_ttl_s`` elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from libs.errors import InvalidRequestError, UnavailableError
from libs.principal import Principal
from libs.singleflight import SingleFlight
from services.security.migrations import apply_migrations

logger = logging.getLogger(__name__)

KEY_PREFIX = "sk-aigw-"
PUBLIC_ID_LENGTH = 8
SECRET_LENGTH = 40
_BASE62 = string.ascii_letters + string.digits
# Keys of other lengths are not issued here. The upper bound only stops absurd input.
_KEY_PATTERN = re.compile(r"sk-aigw-([A-Za-z0-9]{8})-([A-Za-z0-9]{32,128})")
_TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CREATE_ATTEMPTS = 3

_COLUMNS = "id, tenant, name, roles, allowed_models, budget_usd, created_at, revoked_at"


@dataclass(frozen=True)
class ApiKeyRecord:
    """One API key as stored, without its secret or digest."""

    id: str
    """Public id, the 8 characters after ``sk-aigw-``."""
    tenant: str
    """Tenant the key belongs to."""
    name: str
    """Label given at creation, such as the owner or purpose of the key."""
    roles: tuple[str, ...]
    """Roles the authorization policy decides on."""
    allowed_models: tuple[str, ...]
    """Model names the key is limited to. Empty means whatever the roles allow."""
    budget_usd: float | None
    """Spending limit in US dollars, or None for no limit."""
    created_at: datetime
    """Creation time (timezone-aware)."""
    revoked_at: datetime | None
    """Revocation time, or None while the key is active."""

    @property
    def revoked(self) -> bool:
        """Return True once the key has been revoked."""
        return self.revoked_at is not None

    def principal(self) -> Principal:
        """Return the principal that requests made with this key act as."""
        return Principal(
            tenant=self.tenant,
            key_id=self.id,
            roles=self.roles,
            allowed_models=self.allowed_models,
            budget_usd=self.budget_usd,
        )


def _record(row: dict[str, Any]) -> ApiKeyRecord:
    budget: Decimal | None = row["budget_usd"]
    return ApiKeyRecord(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        roles=tuple(row["roles"]),
        allowed_models=tuple(row["allowed_models"]),
        budget_usd=None if budget is None else float(budget),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def _clean_list(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidRequestError(
            f"{what} must be a list of names, not one string",
            reason=f"INVALID_{what.upper()}",
            param=what,
        )
    cleaned = []
    for value in values:
        name = value.strip()
        if not name or "," in name:
            raise InvalidRequestError(
                f"invalid {what} entry {value!r}: use non-empty names without commas",
                reason=f"INVALID_{what.upper()}",
                param=what,
                metadata={"value": value},
            )
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


class _VerifyCache:
    """Bounded, time-limited cache of verification results keyed by key digest."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()

    def get(self, digest: bytes) -> tuple[bool, Principal | None]:
        entry = self._entries.get(digest)
        if entry is None:
            return False, None
        expires_at, principal = entry
        if expires_at <= time.monotonic():
            del self._entries[digest]
            return False, None
        return True, principal

    def put(self, digest: bytes, principal: Principal | None) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[digest] = (time.monotonic() + self.ttl_s, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget_key(self, key_id: str) -> None:
        stale = [
            digest
            for digest, (_, principal) in self._entries.items()
            if principal is not None and principal.key_id == key_id
        ]
        for digest in stale:
            del self._entries[digest]

    def forget_digest(self, digest: bytes) -> None:
        self._entries.pop(digest, None)


class ApiKeyStore:
    """API keys of all tenants in one PostgreSQL table, with a verification cache."""

    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool,
        cache_ttl_s: float = 30.0,
        cache_max_entries: int = 100_000,
        query_timeout_s: float = 2.0,
    ) -> None:
        """Use ``pool``, which must be open and migrated. :meth:`open` does both."""
        self._pool = pool
        self._cache = _VerifyCache(cache_ttl_s, cache_max_entries)
        self._query_timeout_s = query_timeout_s
        # Concurrent verifications of one key share a single database lookup.
        self._lookups: SingleFlight[Principal | None] = SingleFlight()

    @classmethod
    async def open(
        cls,
        database_url: str,
        cache_ttl_s: float = 30.0,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 10.0,
        query_timeout_s: float = 2.0,
    ) -> ApiKeyStore:
        """Connect to ``database_url``, apply the schema migrations and return the store.

        Raises:
            UnavailableError: the database cannot be reached within ``connect_timeout_s``.
        """
        pool = psycopg_pool.AsyncConnectionPool(
            database_url,
            min_size=min_connections,
            max_size=max_connections,
            timeout=query_timeout_s,
            open=False,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            name="security-api-keys",
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
            async with pool.connection(timeout=connect_timeout_s) as conn:
                await apply_migrations(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise UnavailableError(
                f"API key database unreachable: {type(exc).__name__}",
                reason="KEY_STORE_UNAVAILABLE",
            ) from exc
        logger.info(
            "api key store opened",
            extra={"cache_ttl_s": cache_ttl_s, "max_connections": max_connections},
        )
        return cls(pool, cache_ttl_s=cache_ttl_s, query_timeout_s=query_timeout_s)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._pool.close()

    async def create(
        self,
        tenant: str,
        name: str,
        roles: Sequence[str],
        allowed_models: Sequence[str] = (),
        budget_usd: float | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Create a key and return it in plain text, once, with its stored record.

        Raises:
            InvalidRequestError: a tenant, name, role, model or budget is invalid.
            UnavailableError: the database cannot be reached.
        """
        if not _TENANT_PATTERN.fullmatch(tenant):
            raise InvalidRequestError(
                f"invalid tenant {tenant!r}: use 1-128 letters, digits, '.', '_' or '-'",
                reason="INVALID_TENANT",
                param="tenant",
                metadata={"tenant": tenant},
            )
        if not name.strip() or len(name) > 200:
            raise InvalidRequestError(
                "invalid name: use 1-200 characters", reason="INVALID_KEY_NAME", param="name"
            )
        role_list = _clean_list(roles, "roles")
        if not role_list:
            raise InvalidRequestError(
                "a key needs at least one role, such as 'user'",
                reason="MISSING_ROLE",
                param="roles",
            )
        model_list = _clean_list(allowed_models, "allowed_models")
        if budget_usd is not None and not (budget_usd >= 0 and budget_usd < 1e12):
            raise InvalidRequestError(
                f"invalid budget_usd {budget_usd!r}: use a non-negative amount",
                reason="INVALID_BUDGET",
                param="budget_usd",
                metadata={"budget_usd": repr(budget_usd)},
            )

        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            public_id = _random_base62(PUBLIC_ID_LENGTH)
            key = f"{KEY_PREFIX}{public_id}-{_random_base62(SECRET_LENGTH)}"
            try:
                row = await self._fetch_one(
                    f"INSERT INTO security_api_keys"
                    f" (id, tenant, name, key_hash, roles, allowed_models, budget_usd)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (public_id, tenant, name.strip(), _digest(key), role_list, model_list,
                     None if budget_usd is None else Decimal(str(budget_usd))),
                )
            except psycopg.errors.UniqueViolation:
                # Two keys drew the same 8-character id (odds about 1 in 2*10^14 per pair).
                logger.warning("api key id collision, retrying", extra={"attempt": attempt})
                continue
            assert row is not None
            record = _record(row)
            self._cache.forget_digest(_digest(key))
            logger.info(
                "api key created",
                extra={"tenant": tenant, "key_id": record.id, "roles": role_list},
            )
            return key, record
        raise UnavailableError(
            f"could not allocate a unique API key id in {_CREATE_ATTEMPTS} attempts: try again",
            reason="KEY_ID_EXHAUSTED",
        )

    async def verify(self, presented: str) -> Principal | None:
        """Return the principal of an active key, or None for an unknown, malformed or revoked key.

        Raises:
            UnavailableError: the database cannot be reached and the result is not cached.
        """
        match = _KEY_PATTERN.fullmatch(presented) if presented.isascii() else None
        if match is None:
            return None
        digest = _digest(presented)
        cached, principal = self._cache.get(digest)
        if cached:
            return principal

        public_id = match.group(1)
        return await self._lookups.run(digest, lambda: self._lookup_and_cache(public_id, digest))

    async def _lookup_and_cache(self, public_id: str, digest: bytes) -> Principal | None:
        principal = await self._lookup(public_id, digest)
        self._cache.put(digest, principal)
        return principal

    async def _lookup(self, public_id: str, digest: bytes) -> Principal | None:
        row = await self._fetch_one(
            f"SELECT {_COLUMNS}, key_hash FROM security_api_keys WHERE id = %s", (public_id,)
        )
        if row is None:
            return None
        if not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        record = _record(row)
        if record.revoked:
            return None
        return record.principal()

    async def list(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Return the keys of ``tenant`` (all tenants when None), oldest first."""
        if tenant is None:
            rows = await self._fetch_all(
                f"SELECT {_COLUMNS} FROM security_api_keys ORDER BY created_at, id", ()
            )
        else:
            rows = await self._fetch_all(
                f"SELECT {_COLUMNS} FROM security_api_keys WHERE tenant = %s"
                " ORDER BY created_at, id",
                (tenant,),
            )
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str) -> bool:
        """Revoke an active key; return False when no active key has that id."""
        row = await self._fetch_one(
            "UPDATE security_api_keys SET revoked_at = now()"
            " WHERE id = %s AND revoked_at IS NULL RETURNING tenant",
            (key_id,),
        )
        self._cache.forget_key(key_id)
        if row is None:
            return False
        logger.info("api key revoked", extra={"tenant": row["tenant"], "key_id": key_id})
        return True

    async def _fetch_one(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        rows = await self._fetch_all(query, params, limit=1)
        return rows[0] if rows else None

    async def _fetch_all(
        self, query: str, params: tuple[Any, ...], limit: int | None = None
    ) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(self._query_timeout_s * 2):
                async with self._pool.connection() as conn:
                    async with conn.cursor(row_factory=dict_row) as cursor:
                        await cursor.execute(query.encode("utf-8"), params)
                        if cursor.description is None:
                            return []
                        if limit is not None:
                            return await cursor.fetchmany(limit)
                        return await cursor.fetchall()
        except psycopg.errors.UniqueViolation:
            raise
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout, TimeoutError) as exc:
            logger.warning("api key database call failed", extra={"error": type(exc).__name__})
            raise UnavailableError(
                "API key database unavailable: retry shortly",
                reason="KEY_STORE_UNAVAILABLE",
                retry_after_s=1.0,
            ) from exc
