"""Command line entry point: ``python -m tools.simulator --host 127.0.0.1 --port 8090``.

Once listening it prints one JSON line, ``{"event": "listening", "host": ..., "port": N}``,
to stdout, so a caller that asked for port 0 learns the port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import orjson
from aiohttp import web

from tools.simulator.app import create_app
from tools.simulator.faults import SimulatorConfig

logger = logging.getLogger("tools.simulator")


def parse_args(argv: list[str] | None = None) -> SimulatorConfig:
    """Read the simulator settings from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.simulator",
        description="Serve simulated OpenAI and Anthropic APIs with injectable faults.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8090, help="TCP port; 0 picks a free one (default 8090)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before the response headers, in ms"
    )
    parser.add_argument(
        "--first-token-ms",
        type=float,
        default=0.0,
        help="delay between the headers and the first stream event, in ms",
    )
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="delay between stream events, in ms"
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of unscripted requests, 0 to 1, answered with --error-status",
    )
    parser.add_argument(
        "--error-status", type=int, default=503, help="HTTP status of random errors (default 503)"
    )
    parser.add_argument(
        "--answer-bytes", type=int, default=None, help="pad every answer to about this many bytes"
    )
    parser.add_argument(
        "--tokens-per-chunk", type=int, default=1, help="answer tokens per stream event (default 1)"
    )
    parser.add_argument(
        "--log-size",
        type=int,
        default=1000,
        help="requests kept for GET /_sim/requests (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --error-rate draws")
    parser.add_argument(
        "--models", default=None, help="comma-separated model ids for GET /v1/models"
    )
    parser.add_argument(
        "--allow-missing-key",
        action="store_true",
        help="accept OpenAI-format requests that send no API key, as local servers "
        "such as Ollama and LM Studio do",
    )
    args = parser.parse_args(argv)

    if not 0.0 <= args.error_rate <= 1.0:
        parser.error(f"--error-rate must be between 0 and 1, got {args.error_rate}")
    if not 400 <= args.error_status <= 599:
        parser.error(f"--error-status must be an HTTP error status, got {args.error_status}")
    if args.tokens_per_chunk < 1:
        parser.error(f"--tokens-per-chunk must be 1 or more, got {args.tokens_per_chunk}")

    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        first_token_ms=args.first_token_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        error_rate=args.error_rate,
        error_status=args.error_status,
        answer_bytes=args.answer_bytes,
        tokens_per_chunk=args.tokens_per_chunk,
        log_size=args.log_size,
        seed=args.seed,
        require_key=not args.allow_missing_key,
    )
    if args.models:
        models = tuple(name.strip() for name in args.models.split(",") if name.strip())
        config = SimulatorConfig(**{**config.__dict__, "models": models})
    return config


async def serve(config: SimulatorConfig) -> None:
    """Listen until SIGTERM or SIGINT, then stop."""
    # Handlers may be sleeping in a scripted stall; a test simulator need not wait for them.
    runner = web.AppRunner(
        create_app(config), access_log=None, handle_signals=False, shutdown_timeout=0.5
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
    await site.start()

    host, port = runner.addresses[0][:2]
    sys.stdout.write(
        orjson.dumps({"event": "listening", "host": host, "port": port}).decode() + "\n"
    )
    sys.stdout.flush()
    logger.info("simulator listening on %s:%d", host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logger.info("simulator stopping")
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run the simulator on uvloop when it is installed."""
    config = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}',
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))


if __name__ == "__main__":
    main()
