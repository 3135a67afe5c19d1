"""Fault scripts, global fault settings and the bounded request log of the simulator."""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["FaultPlan", "RequestLog", "ScriptBook", "SimulatorConfig", "Step", "StepError"]

# Header values replaced in the request log; a hash prefix still lets tests tell keys apart.
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "proxy-authorization",
        "x-goog-api-key",
        "x-amz-security-token",
    }
)


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings from the command line; the fault settings apply to every request."""

    host: str = "127.0.0.1"
    port: int = 8090
    latency_ms: float = 0.0
    """Delay before the response headers."""
    first_token_ms: float = 0.0
    """Delay between the response headers and the first event; JSON responses wait too."""
    chunk_delay_ms: float = 0.0
    """Delay between stream events."""
    error_rate: float = 0.0
    """Share of requests, 0 to 1, that fail with ``error_status``."""
    error_status: int = 503
    answer_bytes: int | None = None
    """Pad response text to about this many bytes. None keeps the short text."""
    tokens_per_chunk: int = 1
    """Answer tokens per stream event."""
    log_size: int = 1000
    """Requests kept in the request log; older ones are dropped."""
    seed: int | None = None
    """Seed of the random draw behind ``error_rate``."""
    require_key: bool = True
    """Whether OpenAI-format requests without an API key get HTTP 401."""
    models: tuple[str, ...] = (
        "gpt-4o-mini",
        "gpt-4o",
        "claude-3-5-haiku-20241022",
        "claude-3-5-sonnet-20241022",
    )


class StepError(ValueError):
    """A script step is not valid."""


@dataclass(frozen=True)
class Step:
    """One scripted request outcome; a step without fault fields answers normally."""

    status: int | None = None
    """Answer with this HTTP error status, in the format's error shape."""
    retry_after: float | None = None
    """Seconds for the Retry-After header of an error answer."""
    message: str | None = None
    """Error message to send instead of the format's usual text."""
    delay_ms: float = 0.0
    """Delay before the response headers."""
    stall_ms: float = 0.0
    """Pause after the headers (streams: before event ``stall_after_chunks``)."""
    stall_after_chunks: int = 0
    disconnect_after_chunks: int | None = None
    """Close the connection after this many stream events (JSON: half the body)."""
    error_after_chunks: int | None = None
    """Send the format's in-band error event after this many stream events."""
    chunk_delay_ms: float | None = None
    """Delay between stream events of this request, in place of the global setting."""
    answer_bytes: int | None = None
    cached_tokens: int = 0
    """Prompt tokens to report as served from the provider's cache."""
    reasoning_tokens: int = 0
    """Extra completion tokens to report as reasoning (OpenAI format)."""

    @classmethod
    def from_mapping(cls, raw: Any) -> Step:
        """Validate one step from a script request."""
        if not isinstance(raw, Mapping):
            raise StepError("each step must be a JSON object")
        allowed = {item.name for item in fields(cls)}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise StepError(f"unknown step fields {unknown}; allowed: {sorted(allowed)}")
        for key, value in raw.items():
            if key == "message":
                if value is not None and not isinstance(value, str):
                    raise StepError("message must be a string")
            elif value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise StepError(f"{key} must be a number, got {value!r}")
            elif value is not None and value < 0:
                raise StepError(f"{key} must be 0 or more, got {value!r}")
        status = raw.get("status")
        if status is not None and not (200 <= status <= 599):
            raise StepError(f"status must be an HTTP status code, got {status!r}")
        values = dict(raw)
        for key in (
            "status",
            "stall_after_chunks",
            "disconnect_after_chunks",
            "error_after_chunks",
            "answer_bytes",
            "cached_tokens",
            "reasoning_tokens",
        ):
            if values.get(key) is not None:
                values[key] = int(values[key])
        return cls(**values)


@dataclass(frozen=True)
class FaultPlan:
    """The faults for one request: global settings combined with its script step."""

    delay_s: float
    first_token_s: float
    chunk_delay_s: float
    step: Step
    error_status: int | None
    """Error status to answer with, from the step or the global error rate."""


class ScriptBook:
    """Queues of script steps per deployment, consumed one per generation request."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Step]] = {}

    def add(self, deployment: str, steps: list[Step]) -> int:
        """Append steps for a deployment and return how many are queued now."""
        queue = self._queues.setdefault(deployment, deque())
        queue.extend(steps)
        return len(queue)

    def next(self, deployment: str) -> Step | None:
        """Take the next step for the deployment, or None when its queue is empty."""
        queue = self._queues.get(deployment)
        return queue.popleft() if queue else None

    def clear(self, deployment: str | None = None) -> None:
        """Drop the queued steps of one deployment, or of all."""
        if deployment is None:
            self._queues.clear()
        else:
            self._queues.pop(deployment, None)

    def pending(self) -> dict[str, int]:
        """Return the queued step count per deployment."""
        return {name: len(queue) for name, queue in self._queues.items() if queue}


class RequestLog:
    """The most recent requests received, with secret header values replaced."""

    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max(size, 1))
        self._counter = 0

    def add(
        self, deployment: str, method: str, path: str, headers: Mapping[str, str], body: Any
    ) -> dict[str, Any]:
        """Record one request and return its entry, which a stream later completes.

        A streamed response sets ``stream_end`` ("complete", "client_closed" or
        "disconnected" by a script step), ``ended_at`` and ``events_sent``.
        """
        self._counter += 1
        entry = {
            "seq": self._counter,
            "deployment": deployment,
            "method": method,
            "path": path,
            "headers": {key.lower(): _redact(key, value) for key, value in headers.items()},
            "body": body,
            "received_at": time.time(),
            "stream_end": None,
            "ended_at": None,
            "events_sent": None,
        }
        self._entries.append(entry)
        return entry

    def list(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Return the logged requests, oldest first, optionally of one deployment."""
        return [
            entry
            for entry in self._entries
            if deployment is None or entry["deployment"] == deployment
        ]

    def clear(self, deployment: str | None = None) -> None:
        """Forget the logged requests of one deployment, or all."""
        if deployment is None:
            self._entries.clear()
        else:
            kept = [entry for entry in self._entries if entry["deployment"] != deployment]
            self._entries.clear()
            self._entries.extend(kept)


def make_plan(config: SimulatorConfig, step: Step | None, rng: random.Random) -> FaultPlan:
    """Combine the global fault settings with a request's script step."""
    chosen = step or Step()
    error_status = chosen.status if chosen.status is not None and chosen.status >= 400 else None
    if error_status is None and step is None and config.error_rate > 0:
        # Scripted requests are exactly as scripted; only unscripted ones draw errors.
        if rng.random() < config.error_rate:
            error_status = config.error_status
    return FaultPlan(
        delay_s=(config.latency_ms + chosen.delay_ms) / 1000.0,
        first_token_s=config.first_token_ms / 1000.0,
        chunk_delay_s=(config.chunk_delay_ms if chosen.chunk_delay_ms is None else chosen.chunk_delay_ms) / 1000.0,
        step=chosen,
        error_status=error_status,
    )


def _redact(name: str, value: str) -> str:
    if name.lower() not in _SECRET_HEADERS:
        return value
    scheme, secret = ("Bearer ", value[7:]) if value.startswith("Bearer ") else ("", value)
    digest = hashlib.sha256(secret.encode()).hexdigest()[:12]
    return f"{scheme}[redacted sha256:{digest}]"
