"""The usage ledger in PostgreSQL: one row per settled request, and sums over it.

The request id is the primary key, and rows are inserted with ``ON CONFLICT DO NOTHING``,
so a retried settlement never counts twice. When the database cannot be reached, rows
go to an :class:`~services.metering.outbox.Outbox` and are written later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from libs.errors import UnavailableError
from services.metering.apikeys import ApiKey
from services.metering.outbox import Outbox

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works: it only has to be the same in every replica, so that replicas
# starting together apply the migrations one at a time.
_MIGRATION_LOCK_ID = 0x6D65746572

# Each column of metering_usage that a record fills, with its PostgreSQL type for the
# arrays of _INSERT_MANY_RETURNING.
_COLUMN_TYPES = (
    ("request_id", "text"),
    ("tenant", "text"),
    ("key_id", "text"),
    ("model", "text"),
    ("deployment", "text"),
    ("provider", "text"),
    ("prompt_tokens", "integer"),
    ("completion_tokens", "integer"),
    ("cached_tokens", "integer"),
    ("reasoning_tokens", "integer"),
    ("cost_usd", "numeric"),
    ("outcome", "text"),
    ("stream", "boolean"),
    ("start_time", "timestamptz"),
    ("latency_ms", "double precision"),
)
_COLUMNS = tuple(column for column, _ in _COLUMN_TYPES)
_INSERT = sql.SQL(
    "INSERT INTO metering_usage ({columns}) VALUES ({values}) ON CONFLICT (request_id) DO NOTHING"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
)


# Column arrays keep the query text the same for every batch size, so psycopg reuses its
# parsed query and PostgreSQL its prepared plan, unlike a VALUES list of one row per record.
_INSERT_MANY_RETURNING = sql.SQL(
    "INSERT INTO metering_usage ({columns}) SELECT * FROM unnest({arrays})"
    " ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
    arrays=sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(kind)) for _, kind in _COLUMN_TYPES),
).as_string()


def _column_arrays(records: Sequence[UsageRecord]) -> list[list[Any]]:
    return [list(column) for column in zip(*(record.values() for record in records), strict=True)]


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,)
"""Errors after which a write may succeed later: connection failures, pool timeouts,
server shutdown and statement timeouts (PoolTimeout and QueryCanceled are subclasses)."""


@dataclass(frozen=True)
class UsageRecord:
    """One settled request, as stored in the ledger."""

    request_id: str
    tenant: str
    key_id: str
    model: str
    deployment: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    """US dollars, at most 9 decimal places."""
    outcome: str
    stream: bool
    start_time: datetime
    latency_ms: float

    def values(self) -> tuple[Any, ...]:
        """Return the column values in the order of the insert statement."""
        return tuple(getattr(self, column) for column in _COLUMNS)


@dataclass(frozen=True)
class ModelUsage:
    """Sums of the ledger rows of one model."""

    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True)
class UsageReport:
    """Sums of the ledger rows in a range, per model ordered by name, and in total."""

    models: list[ModelUsage] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Return the number of requests over all models."""
        return sum(model.requests for model in self.models)

    @property
    def prompt_tokens(self) -> int:
        """Return the prompt tokens over all models."""
        return sum(model.prompt_tokens for model in self.models)

    @property
    def completion_tokens(self) -> int:
        """Return the completion tokens over all models."""
        return sum(model.completion_tokens for model in self.models)

    @property
    def cost_usd(self) -> Decimal:
        """Return the cost over all models in US dollars."""
        return sum((model.cost_usd for model in self.models), Decimal(0))


def _unavailable() -> UnavailableError:
    return UnavailableError(
        "the usage ledger database is unavailable; retry later",
        reason="LEDGER_UNAVAILABLE",
        retry_after_s=1.0,
    )


class Ledger:
    """The ledger table, its connection pool and the outbox of unwritten rows."""

    def __init__(
        self,
        database_url: str,
        *,
        outbox_max_rows: int,
        flush_timeout_s: float = 5.0,
        pool_max_size: int = 10,
        connection_timeout_s: float = 1.0,
        statement_timeout_ms: int = 5000,
        outbox_initial_backoff_s: float = 0.2,
        outbox_max_backoff_s: float = 10.0,
    ) -> None:
        self._statement_timeout_ms = statement_timeout_ms
        self._flush_timeout_s = flush_timeout_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=pool_max_size,
            open=False,
            # Every call waits at most this long for a connection, so during an outage a
            # Settle queues its row, and an Admit fails, before the caller's deadline.
            timeout=connection_timeout_s,
            kwargs={"autocommit": True},
            configure=self._configure,
            name="metering-ledger",
        )
        self.outbox = Outbox(
            self._write_batch,
            max_rows=outbox_max_rows,
            transient_errors=TRANSIENT_ERRORS,
            initial_backoff_s=outbox_initial_backoff_s,
            max_backoff_s=outbox_max_backoff_s,
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # A hung query would otherwise hold a pooled connection, and the caller, forever.
        await conn.execute(sql.SQL("SET statement_timeout = {}").format(self._statement_timeout_ms))

    async def open(self, timeout_s: float = 10.0) -> None:
        """Connect and apply the migrations; raise psycopg.OperationalError after ``timeout_s``."""
        await self._pool.open(wait=True, timeout=timeout_s)
        try:
            await self.migrate()
        except BaseException:
            await self._pool.close()
            raise

    async def close(self) -> None:
        """Write what the outbox still contains (within the flush timeout), then close the pool."""
        await self.outbox.close(self._flush_timeout_s)
        await self._pool.close()

    async def migrate(self) -> None:
        """Apply the SQL files in ``migrations/`` that this database has not seen, in name order."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS metering_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT version FROM metering_migrations")
            applied = {row[0] for row in await cursor.fetchall()}
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if path.stem in applied:
                    continue
                # Without parameters, psycopg sends the file as one simple query, which
                # may hold several statements.
                await conn.execute(path.read_bytes())
                await conn.execute(
                    "INSERT INTO metering_migrations (version) VALUES (%s)", (path.stem,)
                )
                logger.info("applied ledger migration", extra={"migration": path.stem})

    async def record(self, record: UsageRecord) -> bool | None:
        """Write ``record`` once.

        Returns True when this call inserted the row, False when the request id is
        already in the ledger or the outbox, and None when the database could not be
        reached and the row was queued in the outbox instead. Raises UnavailableError
        when the database is down and the outbox is full.
        """
        return (await self.record_many([record]))[0]

    async def record_many(self, records: Sequence[UsageRecord]) -> list[bool | None]:
        """Write each record once, in one statement; return what ``record`` would for each.

        A request id that appears twice in ``records`` is written once: the later copy
        gets False. Raises UnavailableError when the database is down and the outbox
        cannot take every record.
        """
        results: list[bool | None] = [False] * len(records)
        fresh: dict[str, int] = {}
        for index, record in enumerate(records):
            if record.request_id not in fresh and record.request_id not in self.outbox:
                fresh[record.request_id] = index
        if not fresh:
            return results
        if len(self.outbox):
            # The database failed recently: keep the arrival order and return at once
            # while the outbox task finds out whether it is back.
            self.outbox.add_many([records[index] for index in fresh.values()])
            for index in fresh.values():
                results[index] = None
            return results
        rows = [records[index] for index in fresh.values()]
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_INSERT_MANY_RETURNING, _column_arrays(rows))
                inserted = {row[0] for row in await cursor.fetchall()}
        except TRANSIENT_ERRORS as exc:
            logger.warning(
                "usage ledger write failed; queued the settlements for retry",
                extra={"settlements": len(rows), "settlement_request_id": rows[0].request_id, "error": repr(exc)},
            )
            self.outbox.add_many(rows)
            for index in fresh.values():
                results[index] = None
            return results
        for request_id, index in fresh.items():
            results[index] = request_id in inserted
        return results

    async def _write_batch(self, records: Sequence[UsageRecord]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(_INSERT, [record.values() for record in records])

    async def spend(self, key: ApiKey) -> Decimal:
        """Return everything ``key`` has spent, in US dollars: ledger rows plus queued rows.

        Raises UnavailableError when the database is unavailable.
        """
        # Read the outbox first: a row written between the two reads is then counted
        # twice (too much) rather than not at all.
        queued = self.outbox.pending_cost(key.tenant, key.key_id)
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT COALESCE(sum(cost_usd), 0) FROM metering_usage"
                    " WHERE tenant = %s AND key_id = %s",
                    (key.tenant, key.key_id),
                )
                row = await cursor.fetchone()
        except TRANSIENT_ERRORS as exc:
            logger.warning("could not read spend from the usage ledger", extra={"error": repr(exc)})
            raise _unavailable() from exc
        assert row is not None
        return Decimal(row[0]) + queued

    async def usage(
        self,
        tenant: str,
        key_id: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> UsageReport:
        """Sum the rows of ``tenant`` (and ``key_id`` when given) whose start time is in
        [``start``, ``end``); ``end`` defaults to now.

        Raises UnavailableError when the database is unavailable.
        """
        conditions = [sql.SQL("tenant = %s")]
        params: list[Any] = [tenant]
        if key_id:
            conditions.append(sql.SQL("key_id = %s"))
            params.append(key_id)
        if start is not None:
            conditions.append(sql.SQL("start_time >= %s"))
            params.append(start)
        conditions.append(sql.SQL("start_time < %s"))
        params.append(end if end is not None else datetime.now(UTC))
        query = sql.SQL(
            "SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens),"
            " sum(cached_tokens), sum(cost_usd) FROM metering_usage WHERE {where}"
            # Byte order, so the order does not depend on the database's collation.
            ' GROUP BY model ORDER BY model COLLATE "C"'
        ).format(where=sql.SQL(" AND ").join(conditions))

        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                rows = await cursor.fetchall()
        except TRANSIENT_ERRORS as exc:
            logger.warning("could not read usage from the ledger", extra={"error": repr(exc)})
            raise _unavailable() from exc

        return UsageReport(
            models=[
                ModelUsage(
                    model=row[0],
                    requests=int(row[1]),
                    prompt_tokens=int(row[2]),
                    completion_tokens=int(row[3]),
                    cached_tokens=int(row[4]),
                    cost_usd=Decimal(row[5]),
                )
                for row in rows
            ]
        )
