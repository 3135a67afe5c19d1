"""CPU per request of each process of the gateway under load: ``python -m tools.bench.cpu_split``.

Starts the simulator and one gateway stack (as ``make bench`` does) and sends the *no
cache hit* workload with wrk at 32 connections. It then prints the CPU milliseconds and
the context switches per request of each process tree (Envoy, each service, Cerbos,
PostgreSQL, the simulator), read from /proc before and after the load. It shows where a
request's CPU goes, which the benchmark's single total does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.bench import procs
from tools.bench.run import FIXED_PROMPT, UNIQUE_PROMPT
from tools.bench.targets import BENCH_DIR, MODEL, Gateway, Simulator
from tools.bench.wrk import FIXED, UNIQUE, Workload, run_wrk

PYTHON_SERVICES = ("router", "security", "cache", "metering")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.cpu_split", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load in seconds (default: 10)")
    parser.add_argument(
        "--semantic-cache",
        choices=("on", "off"),
        default="off",
        help="ROUTER_SEMANTIC_CACHE of the stack (default: off)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="wrk connections; 1 measures the sequential case, where latency is the critical path (default: 32)",
    )
    parser.add_argument(
        "--workload",
        choices=(UNIQUE, FIXED),
        default=UNIQUE,
        help=f"{UNIQUE}: no cache hit; {FIXED}: one body, an exact hit after the warm-up (default: {UNIQUE})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record each Python service with py-spy during the load; collapsed stacks go to the run folder",
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
        profile_dir = run_dir if args.profile else None
        print(_split(gateway, simulator, args.seconds, args.connections, args.workload, profile_dir))
    finally:
        gateway.stop()
        simulator.stop()
    return 0


def _split(
    gateway: Gateway, simulator: Simulator, seconds: float, connections: int, kind: str, profile_dir: Path | None
) -> str:
    roots = {child.name: child.pid for child in gateway.stack.children if child.pid is not None}
    postgres = gateway.stack.postgres
    if postgres is not None and postgres.process is not None:
        roots["postgres"] = postgres.process.pid
    assert simulator.process is not None
    roots["simulator"] = simulator.process.pid

    run_id = int(time.time())
    prompt = UNIQUE_PROMPT if kind == UNIQUE else FIXED_PROMPT
    workload = Workload(gateway.url, gateway.headers, MODEL, kind, prompt, run_id)
    # Warm-up with other run numbers, so that no measured prompt is an exact hit; the
    # fixed body is stored by its first request.
    warm_up = Workload(gateway.url, gateway.headers, MODEL, kind, prompt, run_id + 1)
    run_wrk(warm_up, connections=8, threads=1, duration_s=2)
    trees = {name: procs.process_tree([pid]) for name, pid in roots.items()}
    before = {name: procs.cpu_seconds(pids) for name, pids in trees.items()}
    switches_before = {name: procs.context_switches(pids) for name, pids in trees.items()}
    recorders = _start_profiles(roots, profile_dir, seconds) if profile_dir is not None else []
    result = run_wrk(workload, connections=connections, threads=min(2, connections), duration_s=seconds)
    for recorder in recorders:
        recorder.wait(timeout=60)
    after = {name: procs.cpu_seconds(pids) for name, pids in trees.items()}
    switches_after = {name: procs.context_switches(pids) for name, pids in trees.items()}

    served = int(result["requests"])  # type: ignore[call-overload]
    duration_s = int(result["duration_us"]) / 1e6  # type: ignore[call-overload]
    latency = result["latency_us"]
    assert isinstance(latency, dict)
    lines = [
        f"{served} requests in {duration_s:.1f} s ({served / duration_s:.0f} req/s) on {connections} "
        f"connections, cache {result['cache']}",
        f"latency p50 {latency['p50'] / 1000:.2f} ms, p90 {latency['p90'] / 1000:.2f} ms, "
        f"p99 {latency['p99'] / 1000:.2f} ms",
    ]
    total, total_switches = 0.0, 0.0
    for name in roots:
        per_request_ms = (after[name] - before[name]) * 1000 / max(served, 1)
        switches = (switches_after[name] - switches_before[name]) / max(served, 1)
        total += per_request_ms
        total_switches += switches
        lines.append(
            f"  {name:<10} {per_request_ms:6.3f} ms CPU, {switches:5.1f} context switches per request"
        )
    lines.append(
        f"  {'total':<10} {total:6.3f} ms CPU, {total_switches:5.1f} context switches per request"
    )
    if profile_dir is not None:
        lines.append(f"py-spy profiles (collapsed stacks): {profile_dir}/<service>.txt")
    return "\n".join(lines)


def _start_profiles(roots: dict[str, int], profile_dir: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """Start one py-spy recorder per Python service, for the length of the load."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        raise SystemExit("py-spy not found: install it with `.venv/bin/pip install py-spy`")
    recorders = []
    for name in PYTHON_SERVICES:
        if name not in roots:
            continue
        recorders.append(
            subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(roots[name]),
                    "--duration",
                    str(max(1, int(seconds))),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    str(profile_dir / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return recorders


if __name__ == "__main__":
    raise SystemExit(main())
