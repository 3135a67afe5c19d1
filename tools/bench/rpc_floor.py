"""CPU cost of one trivial gRPC call in Python: ``python -m tools.bench.rpc_floor``.

Starts a grpc.aio server with an empty handler (the cache service's GetStats) in a
child process on 127.0.0.1 and calls it from this process on uvloop, one at a time and
32 at a time. It prints the calls per second and the CPU microseconds per call on each
side. Every internal hop of the gateway costs at least this much, whatever the handler
does.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable

import grpc
import uvloop
from aigateway.cache.v1 import cache_service_pb2 as pb
from aigateway.cache.v1 import cache_service_pb2_grpc as pb_grpc

from libs import grpcserver
from tools.bench import procs

CALLS = 20_000


class _EmptyCache(pb_grpc.CacheServiceServicer):
    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:  # noqa: N802 - gRPC name
        return pb.GetStatsResponse()


async def _serve(port: int, mode: str) -> None:
    if mode == "bare":
        server = grpc.aio.server()
        pb_grpc.add_CacheServiceServicer_to_server(_EmptyCache(), server)
    else:
        # As the services register: options, and the error mapping, metrics and access log
        # wrapped around the handler, once at registration or per call in an interceptor.
        interceptors = [_WrapPerCall()] if mode == "interceptor" else []
        server = grpc.aio.server(interceptors=interceptors, options=grpcserver.SERVER_OPTIONS)
        target = server if mode == "interceptor" else grpcserver._WrappingServer(server)
        pb_grpc.add_CacheServiceServicer_to_server(_EmptyCache(), target)  # type: ignore[arg-type]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


class _WrapPerCall(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return grpcserver.wrap_handler(handler_call_details.method, handler)


def _server_main(port: int, mode: str) -> None:
    uvloop.run(_serve(port, mode))


async def _call(port: int, concurrency: int) -> tuple[float, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.CacheServiceStub(channel)
        await stub.GetStats(pb.GetStatsRequest(), wait_for_ready=True, timeout=10)

        async def worker(count: int) -> None:
            for _ in range(count):
                await stub.GetStats(pb.GetStatsRequest())

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(CALLS // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.rpc_floor", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        choices=("bare", "gateway", "interceptor"),
        default="bare",
        help="bare: grpc.aio defaults; gateway: as the services serve; interceptor: the same "
        "wrapping applied per call by a server interceptor (default: bare)",
    )
    args = parser.parse_args(argv)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_server_main, args=(port, args.server), daemon=True)
    server.start()
    try:
        for concurrency in (1, 32):
            server_cpu = procs.cpu_seconds([server.pid or 0])
            wall_s, client_cpu_s = uvloop.run(_call(port, concurrency))
            server_cpu_s = procs.cpu_seconds([server.pid or 0]) - server_cpu
            calls = CALLS // concurrency * concurrency
            print(
                f"{concurrency:>2} at a time: {calls / wall_s:6.0f} calls/s, CPU per call "
                f"{client_cpu_s / calls * 1e6:4.0f} us client, {server_cpu_s / calls * 1e6:4.0f} us server"
            )
    finally:
        server.terminate()
        server.join(5)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    raise SystemExit(main())
