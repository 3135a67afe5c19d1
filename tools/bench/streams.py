"""Time to first token of streamed chat completions, measured by a sequential aiohttp client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson


@dataclass(frozen=True)
class StreamResult:
    """Sequential streaming requests to one target."""

    requests: int
    errors: int
    ttft_ms: list[float]
    """Per successful request: from sending to the first event with answer text, in ms."""
    total_ms: list[float]
    """Per successful request: from sending to the end of the stream, in ms."""


def _first_text(event: bytes) -> bool:
    if not event.startswith(b"data:"):
        return False
    payload = event[5:].strip()
    if payload == b"[DONE]":
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    for choice in chunk.get("choices") or ():
        if (choice.get("delta") or {}).get("content"):
            return True
    return False


async def _run(url: str, headers: dict[str, str], bodies: list[bytes], timeout_s: float) -> StreamResult:
    ttft: list[float] = []
    total: list[float] = []
    errors = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    request_headers = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for body in bodies:
            started = time.perf_counter()
            first: float | None = None
            try:
                async with session.post(url, data=body, headers=request_headers) as response:
                    if response.status != 200:
                        await response.read()
                        errors += 1
                        continue
                    async for line in response.content:
                        if first is None and _first_text(line):
                            first = time.perf_counter()
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
                continue
            if first is None:
                errors += 1
                continue
            ttft.append((first - started) * 1000)
            total.append((time.perf_counter() - started) * 1000)
    return StreamResult(requests=len(bodies), errors=errors, ttft_ms=ttft, total_ms=total)


def measure_streams(url: str, headers: dict[str, str], bodies: list[bytes], timeout_s: float = 30.0) -> StreamResult:
    """Send ``bodies`` one after another with ``stream: true`` and time each stream."""
    return asyncio.run(_run(url, headers, bodies, timeout_s))
