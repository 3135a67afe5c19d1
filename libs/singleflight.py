"""Concurrent calls for the same key share one execution of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs one task per key at a time; callers that arrive while it runs await the same task."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Return the result of ``work()``, started now or by an earlier caller with the same key."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        # Shielded, so that a caller that gives up does not cancel the work others await.
        return await asyncio.shield(task)

    def _done(self, key: Hashable, task: asyncio.Task[T]) -> None:
        self._tasks.pop(key, None)
        if not task.cancelled():
            # Mark the exception retrieved: every caller may have given up already.
            task.exception()
