"""CPU per request of each process of the gateway under load: ``python -m tools.bench.cpu_split``.

Starts the simulator and one gateway stack (as ``make bench`` does) and sends the *no
cache hit* workload with wrk at 32 connections. It then prints the CPU milliseconds per
request that each process tree used (Envoy, each service, Cerbos, PostgreSQL, the
simulator), read from /proc before and after the load. It shows where a request's CPU goes, which the
benchmark's single total does not.
"""

from __future__ import annotations

import argparse
import os
import time

from tools.bench import procs
from tools.bench.run import UNIQUE_PROMPT
from tools.bench.targets import BENCH_DIR, MODEL, Gateway, Simulator
from tools.bench.wrk import UNIQUE, Workload, run_wrk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.cpu_split", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load in seconds (default: 10)")
    parser.add_argument(
        "--semantic-cache",
        choices=("on", "off"),
        default="off",
        help="ROUTER_SEMANTIC_CACHE of the stack (default: off)",
    )
    args = parser.parse_args(argv)

    run_dir = BENCH_DIR / "cpu-split" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    simulator = Simulator(run_dir, answer_bytes=1000)
    simulator.start()
    semantic = "true" if args.semantic_cache == "on" else "false"
    gateway = Gateway(run_dir, simulator, environ={**os.environ, "ROUTER_SEMANTIC_CACHE": semantic})
    try:
        gateway.start()
        print(_split(gateway, simulator, args.seconds))
    finally:
        gateway.stop()
        simulator.stop()
    return 0


def _split(gateway: Gateway, simulator: Simulator, seconds: float) -> str:
    roots = {child.name: child.pid for child in gateway.stack.children if child.pid is not None}
    postgres = gateway.stack.postgres
    if postgres is not None and postgres.process is not None:
        roots["postgres"] = postgres.process.pid
    assert simulator.process is not None
    roots["simulator"] = simulator.process.pid

    run_id = int(time.time())
    workload = Workload(gateway.url, gateway.headers, MODEL, UNIQUE, UNIQUE_PROMPT, run_id)
    # Warm-up with other run numbers, so that no measured prompt is an exact hit.
    warm_up = Workload(gateway.url, gateway.headers, MODEL, UNIQUE, UNIQUE_PROMPT, run_id + 1)
    run_wrk(warm_up, connections=8, threads=1, duration_s=2)
    trees = {name: procs.process_tree([pid]) for name, pid in roots.items()}
    before = {name: procs.cpu_seconds(pids) for name, pids in trees.items()}
    result = run_wrk(workload, connections=32, threads=2, duration_s=seconds)
    after = {name: procs.cpu_seconds(pids) for name, pids in trees.items()}

    served = int(result["requests"])  # type: ignore[call-overload]
    duration_s = int(result["duration_us"]) / 1e6  # type: ignore[call-overload]
    lines = [f"{served} requests in {duration_s:.1f} s ({served / duration_s:.0f} req/s), cache {result['cache']}"]
    total = 0.0
    for name in roots:
        per_request_ms = (after[name] - before[name]) * 1000 / max(served, 1)
        total += per_request_ms
        lines.append(f"  {name:<10} {per_request_ms:6.3f} ms CPU per request")
    lines.append(f"  {'total':<10} {total:6.3f} ms CPU per request")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
