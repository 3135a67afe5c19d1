"""SQL migrations of the security service's PostgreSQL schema.

The ``NNNN_name.sql`` files in this package run in name order, each once. Applied
versions are recorded in ``security_schema_migrations``. One transaction holds an
advisory lock while it applies them, so replicas that start together do not race.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

logger = logging.getLogger(__name__)

# Arbitrary constant that names this service's migration lock among the advisory locks
# of a shared database.
_MIGRATION_LOCK_ID = 0x5EC0_0001


def migration_files() -> list[tuple[str, str]]:
    """Return ``(version, sql)`` for every migration file, in the order they apply."""
    package = resources.files(__name__)
    files = sorted(
        (entry for entry in package.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8")) for entry in files]


async def apply_migrations(conn: psycopg.AsyncConnection[object]) -> list[str]:
    """Apply the migrations the database has not seen and return their versions."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS security_schema_migrations ("
            " version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM security_schema_migrations")
        applied = {row[0] for row in await cursor.fetchall()}
        for version, sql in migration_files():
            if version in applied:
                continue
            await conn.execute(sql.encode("utf-8"))
            await conn.execute(
                "INSERT INTO security_schema_migrations (version) VALUES (%s)", (version,)
            )
            applied_now.append(version)
            logger.info("applied security migration", extra={"migration": version})
    return applied_now
