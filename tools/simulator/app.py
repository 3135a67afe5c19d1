"""The simulator's aiohttp application: routes, control endpoints and response writing.

Every provider endpoint is served at the root (deployment "default") and under a
deployment prefix, ``/{deployment}/v1/...``, so one process can play several
deployments that tests script separately. Every response carries ``x-sim-deployment``.

Control endpoints:

- ``POST /_sim/script`` ``{"deployment": "primary", "steps": [...]}`` queues steps
  (see ``Step``), each consumed by one chat completions or messages request.
- ``GET /_sim/requests?deployment=primary`` lists the logged requests.
- ``POST /_sim/reset`` (optional body ``{"deployment": "primary"}``) clears scripts and log.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from tools.simulator.faults import (
    FaultPlan,
    RequestLog,
    ScriptBook,
    SimulatorConfig,
    Step,
    StepError,
    make_plan,
)

__all__ = ["SIMULATOR", "Simulator", "create_app"]

DEFAULT_DEPLOYMENT = "default"
_DEPLOYMENT_PATTERN = "{deployment:[A-Za-z0-9][A-Za-z0-9_.-]*}"


class Simulator:
    """State shared by the handlers of one simulator process."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.scripts = ScriptBook()
        self.log = RequestLog(config.log_size)
        self.rng = random.Random(config.seed)
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        """Return a fresh identifier suffix for responses and tool calls."""
        return f"{next(self._ids):012x}"

    def plan(self, deployment: str) -> FaultPlan:
        """Take the deployment's next script step and combine it with the global faults."""
        return make_plan(self.config, self.scripts.next(deployment), self.rng)


SIMULATOR = web.AppKey("simulator", Simulator)
LOG_ENTRY = web.RequestKey("log_entry", dict)
"""The request's entry in the request log, for recording how its stream ended."""


def deployment_of(request: web.Request) -> str:
    """Return the deployment named by the request path, or "default"."""
    return request.match_info.get("deployment", DEFAULT_DEPLOYMENT)


def json_response(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Serialize with orjson, which is several times faster than json on this path."""
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request) -> tuple[Any, bool]:
    """Read the body as JSON; returns the value (or the raw text) and whether it parsed."""
    raw = await request.read()
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return raw[:4096].decode("utf-8", errors="replace"), False


def log_request(request: web.Request, body: Any) -> None:
    """Add the request to the simulator's request log."""
    request[LOG_ENTRY] = request.app[SIMULATOR].log.add(
        deployment_of(request), request.method, request.path, request.headers, body
    )


async def send_json_answer(
    request: web.Request, payload: Any, plan: FaultPlan, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Write a JSON response, applying stall and disconnect faults."""
    body = orjson.dumps(payload)
    step = plan.step
    if plan.first_token_s:
        await asyncio.sleep(plan.first_token_s)
    if not step.stall_ms and step.disconnect_after_chunks is None:
        return web.Response(body=body, content_type="application/json", headers=headers)

    response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    try:
        if step.stall_ms:
            await asyncio.sleep(step.stall_ms / 1000.0)
        if step.disconnect_after_chunks is not None:
            await response.write(body[: len(body) // 2])
            _disconnect(request)
            return response
        await response.write(body)
        await response.write_eof()
    except ConnectionError:
        # The client gave up during a stall, which is what the stall is for.
        pass
    return response


async def send_events(
    request: web.Request,
    events: list[bytes],
    plan: FaultPlan,
    error_event: bytes,
    headers: Mapping[str, str],
    content_type: str = "text/event-stream; charset=utf-8",
) -> web.StreamResponse:
    """Write SSE events, applying delays, stalls, in-band errors and disconnects.

    Events between two pauses are written together, so an unfaulted stream costs one
    write instead of one per event. ``content_type`` lets a format with other framing
    (Bedrock's binary event stream) reuse the same faults.
    """
    step = plan.step
    if step.error_after_chunks is not None:
        events = events[: step.error_after_chunks] + [error_event]

    pauses: dict[int, float] = {}
    if plan.first_token_s:
        pauses[0] = plan.first_token_s
    if plan.chunk_delay_s:
        for index in range(1, len(events)):
            pauses[index] = plan.chunk_delay_s
    if step.stall_ms:
        index = min(step.stall_after_chunks, len(events))
        pauses[index] = pauses.get(index, 0.0) + step.stall_ms / 1000.0

    limit = len(events)
    if step.disconnect_after_chunks is not None:
        limit = min(step.disconnect_after_chunks, len(events))

    response = web.StreamResponse(
        headers={
            **headers,
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
        }
    )
    await response.prepare(request)
    sent = [0]
    try:
        await _write_events(response, events[:limit], pauses, sent)
        if step.disconnect_after_chunks is not None:
            _disconnect(request)
            _record_end(request, "disconnected", sent[0])
            return response
        await response.write_eof()
    except ConnectionError:
        # The client went away, for instance after its own timeout during a stall. The
        # close is noticed at the first write after it.
        _record_end(request, "client_closed", sent[0])
        return response
    except asyncio.CancelledError:
        _record_end(request, "client_closed", sent[0])
        raise
    _record_end(request, "complete", sent[0])
    return response


def _record_end(request: web.Request, outcome: str, events_sent: int) -> None:
    entry = request.get(LOG_ENTRY)
    if entry is not None:
        entry.update(stream_end=outcome, ended_at=time.time(), events_sent=events_sent)


async def _write_events(
    response: web.StreamResponse, events: list[bytes], pauses: Mapping[int, float], sent: list[int]
) -> None:
    batch: list[bytes] = []
    for index in range(len(events) + 1):
        pause = pauses.get(index)
        if pause:
            if batch:
                await response.write(b"".join(batch))
                sent[0] += len(batch)
                batch = []
            await asyncio.sleep(pause)
        if index < len(events):
            batch.append(events[index])
    if batch:
        await response.write(b"".join(batch))
        sent[0] += len(batch)


def _disconnect(request: web.Request) -> None:
    """Close the connection without ending the body, as a crashed upstream would."""
    transport = request.transport
    if transport is not None:
        # close() flushes what was written before it closes, unlike abort().
        transport.close()


async def _script(request: web.Request) -> web.Response:
    simulator = request.app[SIMULATOR]
    payload, ok = await read_json(request)
    if not ok or not isinstance(payload, dict):
        return json_response({"error": "body must be a JSON object"}, status=400)
    deployment = payload.get("deployment") or DEFAULT_DEPLOYMENT
    raw_steps = payload.get("steps")
    if not isinstance(deployment, str) or not isinstance(raw_steps, list):
        return json_response({"error": "deployment must be a string and steps a list"}, status=400)
    try:
        steps = [Step.from_mapping(raw) for raw in raw_steps]
    except StepError as error:
        return json_response({"error": str(error)}, status=400)
    queued = simulator.scripts.add(deployment, steps)
    return json_response({"deployment": deployment, "queued": queued})


async def _requests(request: web.Request) -> web.Response:
    deployment = request.query.get("deployment")
    entries = request.app[SIMULATOR].log.list(deployment)
    return json_response({"requests": entries})


async def _reset(request: web.Request) -> web.Response:
    simulator = request.app[SIMULATOR]
    deployment = None
    if request.can_read_body:
        payload, ok = await read_json(request)
        if ok and isinstance(payload, dict) and isinstance(payload.get("deployment"), str):
            deployment = payload["deployment"]
    simulator.scripts.clear(deployment)
    simulator.log.clear(deployment)
    return json_response({"reset": deployment or "all"})


async def _scripts(request: web.Request) -> web.Response:
    return json_response({"pending": request.app[SIMULATOR].scripts.pending()})


async def _tag_deployment(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["x-sim-deployment"] = deployment_of(request)


def create_app(config: SimulatorConfig) -> web.Application:
    """Build the simulator application for ``config``."""
    from tools.simulator import anthropic_api, openai_api, provider_routes

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIMULATOR] = Simulator(config)
    app.on_response_prepare.append(_tag_deployment)

    for prefix in ("", "/" + _DEPLOYMENT_PATTERN):
        app.router.add_post(prefix + "/v1/chat/completions", openai_api.chat_completions)
        app.router.add_post(prefix + "/v1/messages", anthropic_api.messages)
        app.router.add_get(prefix + "/v1/models", openai_api.models)
        provider_routes.add_routes(app, prefix)

    app.router.add_post("/_sim/script", _script)
    app.router.add_get("/_sim/script", _scripts)
    app.router.add_get("/_sim/requests", _requests)
    app.router.add_post("/_sim/reset", _reset)
    return app
