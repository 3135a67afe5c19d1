"""A bounded in-memory queue of settlements that the ledger could not write yet.

While the database is unreachable, Settle puts the usage here and returns at once, and a
background task retries the writes with exponential backoff until the queue is empty.

NOTE: the queue lives only in this process. If the process dies (SIGKILL, OOM, node
loss) while the database is down, the queued rows are lost. The ledger and GetUsage
miss them, and so does any spend loaded from the ledger later. A key's spend already
in Redis keeps their cost until it expires. A clean shutdown retries once more and then
logs every row it could not write at ERROR, so an operator can replay them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING

from libs.errors import UnavailableError
from services.metering import metrics

if TYPE_CHECKING:
    from services.metering.ledger import UsageRecord

logger = logging.getLogger(__name__)

BatchWriter = Callable[[Sequence["UsageRecord"]], Awaitable[None]]


class Outbox:
    """Settlements waiting to be written, in arrival order, at most one per request id."""

    def __init__(
        self,
        write_batch: BatchWriter,
        *,
        max_rows: int,
        transient_errors: tuple[type[BaseException], ...],
        batch_size: int = 500,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._write_batch = write_batch
        self.max_rows = max_rows
        self._transient_errors = transient_errors
        self._close_errors: tuple[type[BaseException], ...] = (TimeoutError, *transient_errors)
        self._batch_size = batch_size
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rows: dict[str, UsageRecord] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._rows

    def add(self, record: UsageRecord) -> None:
        """Queue ``record`` and make sure the retry task runs.

        Raises UnavailableError (reason LEDGER_UNAVAILABLE) when the queue is full, so the
        caller keeps the usage and retries instead of losing it here.
        """
        self.add_many([record])

    def add_many(self, records: Sequence[UsageRecord]) -> None:
        """Queue every record, or none of them: raise UnavailableError when they do not all fit."""
        new = [record for record in records if record.request_id not in self._rows]
        if len(self._rows) + len(new) > self.max_rows:
            raise UnavailableError(
                f"the usage ledger is unavailable and {len(self._rows)} of at most {self.max_rows} "
                "settlements are already waiting; retry later",
                reason="LEDGER_UNAVAILABLE",
                metadata={"outbox_rows": str(self.max_rows)},
                retry_after_s=5.0,
            )
        for record in new:
            self._rows[record.request_id] = record
        if not new:
            return
        metrics.OUTBOX_ROWS.set(len(self._rows))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry_until_empty())

    def pending_cost(self, tenant: str, key_id: str) -> Decimal:
        """Return the cost of the queued settlements of one API key, in US dollars."""
        return sum(
            (
                row.cost_usd
                for row in self._rows.values()
                if row.tenant == tenant and row.key_id == key_id
            ),
            Decimal(0),
        )

    async def close(self, timeout_s: float) -> None:
        """Stop retrying, make one last attempt within ``timeout_s``, and log what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if not self._rows:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._write_all()
        except self._close_errors as exc:
            logger.error(
                "usage ledger unavailable at shutdown; settlements not written",
                extra={"count": len(self._rows), "error": repr(exc)},
            )
        for record in self._rows.values():
            # One line per row, with the values needed to insert it by hand.
            logger.error("settlement lost at shutdown", extra={"settlement": asdict(record)})
        self._rows.clear()
        metrics.OUTBOX_ROWS.set(0)

    async def _retry_until_empty(self) -> None:
        delay = self._initial_backoff_s
        attempt = 0
        while self._rows:
            # Jitter spreads the retries of many replicas after a shared outage.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1
            try:
                written = await self._write_all()
            except self._transient_errors as exc:
                logger.warning(
                    "usage ledger still unavailable; will retry",
                    extra={"attempt": attempt, "pending": len(self._rows), "error": repr(exc)},
                )
                delay = min(delay * 2, self._max_backoff_s)
                continue
            logger.info(
                "usage ledger available again; queued settlements written",
                extra={"written": written, "attempts": attempt},
            )
            delay = self._initial_backoff_s
            attempt = 0

    async def _write_all(self) -> int:
        written = 0
        while self._rows:
            batch = list(islice(self._rows.values(), self._batch_size))
            try:
                await self._write_batch(batch)
            except self._transient_errors:
                raise
            except Exception:
                # A row the database rejects would block every later one: write the batch
                # row by row to find and drop it.
                written += await self._write_one_by_one(batch)
            else:
                written += len(batch)
                self._remove(batch)
        return written

    async def _write_one_by_one(self, batch: Sequence[UsageRecord]) -> int:
        written = 0
        for record in batch:
            try:
                await self._write_batch([record])
            except self._transient_errors:
                raise
            except Exception:
                logger.exception(
                    "usage ledger rejected a settlement; dropped it",
                    extra={"settlement": asdict(record)},
                )
                metrics.OUTBOX_DROPPED.inc()
            else:
                written += 1
            self._remove([record])
        return written

    def _remove(self, batch: Sequence[UsageRecord]) -> None:
        for record in batch:
            self._rows.pop(record.request_id, None)
        metrics.OUTBOX_ROWS.set(len(self._rows))
