"""Audit log of security decisions, written to PostgreSQL in the background.

An event records who (tenant, key id), what (model, action), the decision with its reason
code, the number of PII values redacted per type and the injection technique found. It
never contains prompt text or PII values.

:meth:`AuditLog.record` only appends to an in-memory buffer, so a request never waits for
the database. A background task writes the buffer in batches with ``COPY``. While the
database is down the task logs a warning, keeps the events and retries with exponential
backoff. The buffer is bounded: once it holds ``max_buffered`` events, new ones are
dropped and counted in :attr:`AuditLog.dropped`. :meth:`AuditLog.close` writes what is
left, waiting up to a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from libs.errors import UnavailableError
from services.security.migrations import apply_migrations

logger = logging.getLogger(__name__)

ALLOWED = "allowed"
DENIED = "denied"

_COPY = (
    "COPY security_audit_events (occurred_at, request_id, tenant, key_id, model, action,"
    " decision, reason, pii_counts, injection_technique, injection_score) FROM STDIN"
)
# Errors that mean the database cannot be reached now, as opposed to rejected rows.
_UNREACHABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, OSError, TimeoutError)
# At most one warning per this many seconds while writes keep failing or events drop.
_WARNING_INTERVAL_S = 30.0


@dataclass(frozen=True)
class AuditEvent:
    """One security decision about one request."""

    tenant: str
    """Tenant of the caller."""
    key_id: str
    """Public id of the API key, or the subject of a token."""
    action: str
    """Requested action, such as ``invoke``."""
    decision: str
    """``allowed`` or ``denied``."""
    reason: str = ""
    """UPPER_SNAKE reason code of a denial, such as ``MODEL_NOT_ALLOWED``, or empty."""
    model: str | None = None
    """Public name of the requested model."""
    pii_counts: Mapping[str, int] = field(default_factory=dict)
    """Entity type to the number of values redacted from the prompt."""
    injection_technique: str | None = None
    """Prompt-injection technique found, if any."""
    injection_score: float | None = None
    """Injection score from 0 to 1, if the prompt was screened."""
    request_id: str | None = None
    """Request id that ties the event to logs and traces."""
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """Time of the decision (timezone-aware)."""

    def __post_init__(self) -> None:
        if self.decision not in (ALLOWED, DENIED):
            raise ValueError(f"invalid decision {self.decision!r}: use 'allowed' or 'denied'")
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        for name, count in self.pii_counts.items():
            if not isinstance(count, int) or count < 0:
                raise ValueError(
                    f"invalid pii_counts[{name!r}] = {count!r}: use a count of 0 or more"
                )

    def denied(self, reason: str, injection_technique: str | None = None) -> AuditEvent:
        """Return a copy of this event as a denial with ``reason`` and, if given, the technique."""
        return replace(
            self,
            decision=DENIED,
            reason=reason,
            injection_technique=injection_technique or self.injection_technique,
        )

    def row(self) -> tuple[Any, ...]:
        """Return the event's values in the column order of the audit table."""
        return (
            self.occurred_at,
            self.request_id,
            self.tenant,
            self.key_id,
            self.model,
            self.action,
            self.decision,
            self.reason,
            Jsonb(dict(self.pii_counts)),
            self.injection_technique,
            self.injection_score,
        )


class _Recorded:
    """Already-finished awaitable, so ``record`` works with and without ``await``."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_RECORDED = _Recorded()


class AuditLog:
    """Buffered, batched writer of :class:`AuditEvent` rows."""

    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_buffered: int = 100_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        write_timeout_s: float = 10.0,
    ) -> None:
        """Write through ``pool``, which must be open and migrated. :meth:`open` does both.

        Args:
            batch_size: events per ``COPY``.
            flush_interval_s: longest time an event waits in the buffer while the
                database is up.
            max_buffered: maximum number of events kept while the database is down. Events
                recorded beyond it are dropped.
            retry_initial_s: first wait after a failed write, doubled per failure.
            retry_max_s: longest wait between retries.
            write_timeout_s: time limit of one batch write.
        """
        self._pool = pool
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_buffered = max_buffered
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._write_timeout_s = write_timeout_s
        self._buffer: deque[AuditEvent] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._closed = False
        self._written = 0
        self._dropped = 0
        self._in_flight = 0
        self._failing_since: float | None = None
        self._last_failure_warning = 0.0
        self._last_drop_warning = 0.0
        self._writer = asyncio.create_task(self._run(), name="audit-log-writer")

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        connect_timeout_s: float = 10.0,
        **options: Any,
    ) -> AuditLog:
        """Connect to ``database_url``, apply the schema migrations and start the writer.

        ``options`` are the keyword arguments of the constructor.

        Raises:
            UnavailableError: the database cannot be reached within ``connect_timeout_s``.
        """
        pool = psycopg_pool.AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=2,
            timeout=connect_timeout_s,
            open=False,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            name="security-audit",
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
            async with pool.connection(timeout=connect_timeout_s) as conn:
                await apply_migrations(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise UnavailableError(
                f"audit database unreachable: {type(exc).__name__}",
                reason="AUDIT_LOG_UNAVAILABLE",
            ) from exc
        return cls(pool, **options)

    @property
    def pending(self) -> int:
        """Events recorded but not yet written."""
        return len(self._buffer) + self._in_flight

    @property
    def written(self) -> int:
        """Events written since the log was opened."""
        return self._written

    @property
    def dropped(self) -> int:
        """Events discarded because the buffer was full or the log was closed."""
        return self._dropped

    def record(self, event: AuditEvent) -> Awaitable[None]:
        """Buffer ``event`` for writing and return at once.

        The event is buffered before this returns. The result may be awaited or ignored.
        """
        if self._closed or len(self._buffer) >= self._max_buffered:
            self._dropped += 1
            now = time.monotonic()
            if now - self._last_drop_warning >= _WARNING_INTERVAL_S:
                self._last_drop_warning = now
                logger.warning(
                    "audit event dropped",
                    extra={
                        "cause": "closed" if self._closed else "buffer full",
                        "dropped_total": self._dropped,
                        "max_buffered": self._max_buffered,
                    },
                )
            return _RECORDED
        self._buffer.append(event)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()
        return _RECORDED

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every recorded event is written; return False on timeout."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        while self.pending:
            if time.monotonic() >= deadline or self._writer.done():
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write the remaining events (waiting up to ``timeout_s``), then close the pool."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
        except TimeoutError:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._closed = True
        unwritten = self.pending
        if unwritten:
            self._dropped += unwritten
            self._buffer.clear()
            self._in_flight = 0
            logger.warning(
                "audit log closed with unwritten events",
                extra={"unwritten": unwritten, "timeout_s": timeout_s},
            )
        await self._pool.close()
        logger.info("audit log closed", extra={"written": self._written, "dropped": self._dropped})

    async def _run(self) -> None:
        backoff = self._retry_initial_s
        while True:
            if not self._buffer:
                if self._closing:
                    return
                await self._sleep(self._flush_interval_s)
                continue

            count = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                await self._write(batch)
            except _UNREACHABLE as exc:
                # The database is unreachable, so the batch goes back in front, in order,
                # and is retried after a backoff that close() does not cut short.
                self._buffer.extendleft(reversed(batch))
                self._in_flight = 0
                self._note_failure(exc)
                await self._sleep(backoff, interruptible=not self._closing)
                backoff = min(backoff * 2, self._retry_max_s)
                continue
            except Exception:
                # The database rejected the rows themselves, so retrying cannot help.
                self._in_flight = 0
                self._dropped += count
                logger.exception("audit batch rejected, dropping it", extra={"events": count})
                continue
            self._in_flight = 0
            self._written += count
            backoff = self._retry_initial_s
            if self._failing_since is not None:
                logger.info(
                    "audit log writes resumed",
                    extra={
                        "failing_for_s": round(time.monotonic() - self._failing_since, 1),
                        "pending": self.pending,
                    },
                )
                self._failing_since = None
            if self._buffer and len(self._buffer) < self._batch_size:
                # Under load, events queue during every write. Waiting for the interval
                # makes each COPY carry many of them instead of a few.
                await self._sleep(self._flush_interval_s)

    async def _sleep(self, seconds: float, interruptible: bool = True) -> None:
        """Sleep up to ``seconds``. A full batch or :meth:`close` ends the sleep early."""
        self._wake.clear()
        if not interruptible:
            await asyncio.sleep(seconds)
            return
        if self._closing:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _write(self, batch: list[AuditEvent]) -> None:
        async with asyncio.timeout(self._write_timeout_s):
            async with self._pool.connection() as conn:
                async with conn.cursor() as cursor:
                    async with cursor.copy(_COPY) as copy:
                        for event in batch:
                            await copy.write_row(event.row())

    def _note_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._last_failure_warning < _WARNING_INTERVAL_S:
            return
        self._last_failure_warning = now
        logger.warning(
            "audit log write failed, retrying",
            extra={
                "error": type(exc).__name__,
                "pending": self.pending,
                "failing_for_s": round(now - self._failing_since, 1),
            },
        )
