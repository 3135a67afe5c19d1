"""``python -m services.metering`` as a real process: health, metrics, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.pgserver import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class MeteringProcess:
    """A metering process started by a test, with the log lines it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, object]] = []
        self.other_lines: list[str] = []

    async def wait_for_log(self, message: str, timeout_s: float = 20.0) -> dict[str, object]:
        """Read stdout until a JSON line with ``message`` appears, and return it."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"process exited before logging {message!r}: {self.lines} {self.other_lines}")
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    self.other_lines.append(raw.decode(errors="replace").rstrip())
                    continue
                assert isinstance(line, dict)
                self.lines.append(line)
                if line.get("message") == message:
                    return line


Launch = Callable[[dict[str, str]], Awaitable[MeteringProcess]]


def _port_taken(host: str, port: int) -> bool:
    """Whether a server could not bind the port now, as gRPC binds it (with SO_REUSEADDR).

    A connection of another program can hold a default port as its source port, up to a
    minute after it closed (TIME_WAIT), since the defaults lie in Linux's ephemeral range.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


async def _health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(response.status)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


@pytest.fixture
async def launch_metering() -> AsyncIterator[Launch]:
    """Return a function that starts the service with exactly the METERING_* variables given."""
    started: list[asyncio.subprocess.Process] = []

    async def launch(settings: dict[str, str]) -> MeteringProcess:
        env = {name: value for name, value in os.environ.items() if not name.startswith("METERING_")}
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'libs' / 'gen'}"
        env.update(settings)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.metering",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        started.append(process)
        return MeteringProcess(process)

    yield launch
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serves_with_only_database_url(launch_metering: Launch, pg_database: str) -> None:
    if _port_taken("127.0.0.1", 50054) or _port_taken("127.0.0.1", 9104):
        pytest.skip("the default port 50054 or 9104 is taken on 127.0.0.1")
    service = await launch_metering({"METERING_DATABASE_URL": pg_database})

    serving = await service.wait_for_log("serving")
    status = await _health(50054)
    metrics = await asyncio.to_thread(_metrics, 9104)
    service.process.send_signal(signal.SIGTERM)
    draining = await _health(50054)

    assert serving["port"] == 50054
    assert serving["metrics_port"] == 9104
    assert status == health_pb2.HealthCheckResponse.SERVING
    for name in (
        "aigw_tokens_total",
        "aigw_cost_usd_total",
        "aigw_requests_total",
        "aigw_budget_rejections_total",
    ):
        assert f"# TYPE {name} counter" in metrics
    # During the default 5 s drain, health already reports NOT_SERVING.
    assert draining == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_stops_cleanly_on_sigterm(launch_metering: Launch, pg_database: str) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    service = await launch_metering(
        {
            "METERING_DATABASE_URL": pg_database,
            "METERING_LISTEN": f"127.0.0.1:{grpc_port}",
            "METERING_METRICS_PORT": str(metrics_port),
            "METERING_DRAIN_S": "0.2",
        }
    )
    serving = await service.wait_for_log("serving")
    # The process installs its signal handlers just after the "serving" line, so a health
    # answer proves a SIGTERM from now on takes the graceful path.
    status = await _health(grpc_port)

    service.process.send_signal(signal.SIGTERM)
    stopped = await service.wait_for_log("stopped", timeout_s=10)
    code = await asyncio.wait_for(service.process.wait(), timeout=10)

    assert serving["config"]["database"].endswith(pg_database.rpartition("/")[2])  # type: ignore[index]
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert stopped["service"] == "metering"
    assert code == 0


async def test_missing_database_url_exits_with_message(launch_metering: Launch) -> None:
    service = await launch_metering({})

    code = await asyncio.wait_for(service.process.wait(), timeout=20)
    assert service.process.stdout is not None
    output = (await service.process.stdout.read()).decode()

    assert code == 2
    assert "METERING_DATABASE_URL" in output


async def test_port_in_use_exits_with_message(launch_metering: Launch, pg_database: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = await launch_metering(
            {
                "METERING_DATABASE_URL": pg_database,
                "METERING_LISTEN": f"127.0.0.1:{port}",
                "METERING_METRICS_PORT": str(free_port()),
            }
        )
        code = await asyncio.wait_for(service.process.wait(), timeout=20)
    assert service.process.stdout is not None
    output = (await service.process.stdout.read()).decode()

    assert code == 1
    assert f"could not listen on 127.0.0.1:{port}" in output
    assert "METERING_LISTEN" in output
    assert "Traceback" not in output
