"""Run the benchmark: each target in turn in front of one simulator, the same load for all."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.bench import procs
from tools.bench.streams import measure_streams
from tools.bench.targets import MODEL, Gateway, LiteLLM, Portkey, Simulator, Target
from tools.bench.wrk import FIXED, SPACED, UNIQUE, Workload, run_wrk

# Prompt of UNIQUE requests: a Lua format string taking run id, worker and request number.
# Numbers differ between any two requests, so the semantic guard never serves one for another.
UNIQUE_PROMPT = "Benchmark run %d, worker %d, request %d: write one sentence about the sea."
FIXED_PROMPT = "Write one sentence about the sea for the benchmark."
# The semantic rows store SEMANTIC_STORED, then ask SEMANTIC_QUERY: another question frame
# around the same content words, which the guard accepts.
SEMANTIC_STORED = "How do I reset my password?"
SEMANTIC_QUERY = "What are the steps to reset my password?"

CONNECTIONS = 32
WRK_THREADS = 2
WARM_UP_S = 2.0
# A run with concurrent phases shorter than 10 s warms each target up for 1 s only.
SHORT_WARM_UP_S = 1.0
# Bound of the sequential phase; a target slower than this gets fewer requests than asked.
MAX_SEQUENTIAL_S = 150.0


@dataclass
class Settings:
    """How long and how much each phase runs."""

    seconds: float
    """Length of the concurrent phase, in seconds."""
    sequential_requests: int
    """Requests in the sequential phase (one connection)."""
    stream_requests: int
    """Sequential streamed requests for time to first token."""
    answer_bytes: int = 1000
    """Size the simulator pads each answer to."""
    targets: tuple[str, ...] = ("simulator", "gateway", "gateway-semantic-off", "litellm", "portkey")


@dataclass
class Row:
    """Results of one target and workload."""

    name: str
    label: str
    version: str
    workload: str
    sequential: dict[str, Any] = field(default_factory=dict)
    concurrent: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, Any] = field(default_factory=dict)
    cpu_s_per_1k: float | None = None
    peak_rss_mib: float | None = None
    errors: int = 0
    notes: list[str] = field(default_factory=list)


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _spaced(text: str, n: int) -> str:
    """Return ``text`` with gap i between words widened to one to three spaces by digit i of ``n`` in base 3."""
    words = text.split()
    out = [words[0]]
    for word in words[1:]:
        out.append(" " * (n % 3 + 1))
        n //= 3
        out.append(word)
    return "".join(out)


def _stream_bodies(mode: str, prompt: str, run_id: int, count: int) -> list[bytes]:
    bodies = []
    for i in range(count):
        if mode == UNIQUE:
            text = f"Benchmark stream {run_id}, request {i + 1}: write one sentence about the sea."
        elif mode == SPACED:
            # Offset from the wrk workers' numbers, so these prompts are new to the exact cache.
            text = _spaced(prompt, 900_000 + i)
        else:
            text = prompt
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": True}
        bodies.append(json.dumps(body).encode())
    return bodies


def _post(target: Target, prompt: str) -> tuple[int, str]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(
        target.url, data=body, headers={"Content-Type": "application/json", **target.headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status, response.headers.get("x-aigw-cache", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-aigw-cache", "")


def _prime(target: Target, stored: str, query: str, expected: str) -> str | None:
    """Store ``stored`` through the gateway, then wait until ``query`` is served as ``expected``.

    Returns None when it is, else a note with the status and cache header the gateway returned.
    """
    status, cache = _post(target, stored)
    if status != 200:
        return f"priming request failed with HTTP {status}"
    for _ in range(50):
        # The router stores answers in the background after replying.
        time.sleep(0.1)
        status, cache = _post(target, query)
        if status == 200 and cache == expected:
            return None
    return f"expected x-aigw-cache {expected}, got {cache or 'none'} (HTTP {status})"


def _latency_ms(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency_us"]
    duration_s = result["duration_us"] / 1e6
    errors = sum(result["errors"].values())
    return {
        "requests": result["requests"],
        "duration_s": round(duration_s, 3),
        "rps": round(result["requests"] / duration_s, 1) if duration_s else 0.0,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "mean_ms": round(latency["mean"] / 1000, 3),
        "max_ms": latency["max"] / 1000,
        "errors": errors,
        "error_kinds": result["errors"],
        "cache": result["cache"],
    }


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    target: Target,
    workload_name: str,
    mode: str,
    prompt: str,
    settings: Settings,
    run_id: int,
    variant: str = "",
) -> Row:
    """Warm up, then run the sequential, concurrent and streaming phases against ``target``.

    The row is named after the target, then ``workload_name``, then ``variant`` (a setting
    of the target that differs from its default), each part in the same dashed form.
    """
    parts = [part for part in (workload_name, variant) if part]
    row = Row(
        name="-".join([target.name, *parts]),
        label=", ".join([target.label, *(part.replace("-", " ") for part in parts)]),
        version=target.version(),
        workload=mode,
    )
    workload = Workload(target.url, target.headers, MODEL, mode, prompt, run_id)
    tree = lambda: procs.process_tree(target.pids())  # noqa: E731
    warm_up_s = WARM_UP_S if settings.seconds >= 10 else SHORT_WARM_UP_S
    with procs.RssSampler(target.pids) as sampler:
        _progress(f"{row.name}: warm-up")
        warm_up = run_wrk(
            Workload(target.url, target.headers, MODEL, mode, prompt, run_id + 1),
            connections=1,
            threads=1,
            duration_s=warm_up_s,
        )

        # The phase ends when the request limit is reached. Its duration, from the
        # warm-up's rate with a margin, only bounds a target that slows down.
        rate = max(warm_up["requests"], 1) / warm_up_s
        duration_s = min(MAX_SEQUENTIAL_S, max(2.0, 2 * settings.sequential_requests / rate))
        _progress(f"{row.name}: {settings.sequential_requests} sequential requests (at most {duration_s:.0f} s)")
        sequential = run_wrk(
            workload, connections=1, threads=1, duration_s=duration_s, limit=settings.sequential_requests
        )
        row.sequential = _latency_ms(sequential)
        # The phase's length includes wrk's start and the wait for the last marker, so
        # no rate for this phase.
        del row.sequential["rps"], row.sequential["duration_s"]

        _progress(f"{row.name}: {CONNECTIONS} connections for {settings.seconds:g} s")
        before = procs.cpu_seconds(tree())
        concurrent = run_wrk(
            Workload(target.url, target.headers, MODEL, mode, prompt, run_id + 2),
            connections=CONNECTIONS,
            threads=WRK_THREADS,
            duration_s=settings.seconds,
        )
        used = procs.cpu_seconds(tree()) - before
        row.concurrent = _latency_ms(concurrent)
        if concurrent["requests"]:
            row.cpu_s_per_1k = round(used / concurrent["requests"] * 1000, 3)

        _progress(f"{row.name}: {settings.stream_requests} streamed requests")
        streams = measure_streams(
            target.url, target.headers, _stream_bodies(mode, prompt, run_id, settings.stream_requests)
        )
        row.streams = {
            "requests": streams.requests,
            "errors": streams.errors,
            "ttft_p50_ms": round(statistics.median(streams.ttft_ms), 3) if streams.ttft_ms else None,
            "ttft_p99_ms": round(_percentile(streams.ttft_ms, 0.99), 3) if streams.ttft_ms else None,
            "total_p50_ms": round(statistics.median(streams.total_ms), 3) if streams.total_ms else None,
        }
        sampler.sample()
    row.peak_rss_mib = round(sampler.peak_bytes / 2**20, 1)
    row.errors = row.sequential["errors"] + row.concurrent["errors"]
    return row


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    # wrk -v prints "wrk <version> [epoll] Copyright ..." on its first line.
    wrk_version = ((wrk.stdout or wrk.stderr).splitlines() or ["wrk"])[0].split(" Copyright")[0]
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_generator": wrk_version,
    }


def run(settings: Settings, run_dir: Path) -> dict[str, Any]:
    """Run every selected target and return the results with overheads and ratios."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = int(time.time())
    rows: list[Row] = []
    simulator = Simulator(run_dir, settings.answer_bytes)
    _progress("starting the simulator")
    simulator.start()
    try:
        if "simulator" in settings.targets:
            rows.append(measure(simulator, "", UNIQUE, UNIQUE_PROMPT, settings, run_id))
        if "gateway" in settings.targets:
            # Set explicitly, so a ROUTER_SEMANTIC_CACHE=false in the caller's environment
            # cannot turn these rows into semantic-cache-off rows.
            gateway = Gateway(run_dir, simulator, environ={**os.environ, "ROUTER_SEMANTIC_CACHE": "true"})
            _progress("starting the gateway (tools.stack)")
            gateway.start()
            try:
                rows.append(measure(gateway, "no-cache-hit", UNIQUE, UNIQUE_PROMPT, settings, run_id))
                note = _prime(gateway, FIXED_PROMPT, FIXED_PROMPT, "exact")
                rows.append(measure(gateway, "exact-cache-hit", FIXED, FIXED_PROMPT, settings, run_id))
                if note:
                    rows[-1].notes.append(note)
                note = _prime(gateway, SEMANTIC_STORED, SEMANTIC_QUERY, "semantic")
                rows.append(measure(gateway, "semantic-cache-hit", SPACED, SEMANTIC_QUERY, settings, run_id))
                if note:
                    rows[-1].notes.append(note)
            finally:
                gateway.stop()
        if "gateway-semantic-off" in settings.targets:
            # A second stack whose router neither looks up nor stores in the semantic cache,
            # so no prompt is embedded. Every other stage of the pipeline stays on.
            gateway = Gateway(
                run_dir,
                simulator,
                environ={**os.environ, "ROUTER_SEMANTIC_CACHE": "false"},
                data_dir_name="gateway-semantic-off",
            )
            _progress("starting the gateway with ROUTER_SEMANTIC_CACHE=false (tools.stack)")
            gateway.start()
            try:
                # Run ids that differ from the first stack's, so no prompt repeats one it answered.
                rows.append(
                    measure(
                        gateway,
                        "no-cache-hit",
                        UNIQUE,
                        UNIQUE_PROMPT,
                        settings,
                        run_id + 10,
                        variant="semantic-cache-off",
                    )
                )
            finally:
                gateway.stop()
        for factory in (LiteLLM, Portkey):
            if factory.name not in settings.targets:
                continue
            target = factory(run_dir, simulator)
            _progress(f"starting {target.label}")
            target.start()
            try:
                rows.append(measure(target, "", UNIQUE, UNIQUE_PROMPT, settings, run_id))
            finally:
                target.stop()
    finally:
        simulator.stop()
    return summarize(rows, settings)


def summarize(rows: list[Row], settings: Settings) -> dict[str, Any]:
    """Add overheads over the direct simulator and ratios to LiteLLM to every row."""
    by_name = {row.name: row for row in rows}
    base = by_name.get("simulator")
    peer = by_name.get("litellm")
    results = []
    for row in rows:
        entry = asdict(row)
        if base is not None:
            entry["overhead_ms"] = {
                "sequential_p50": round(row.sequential["p50_ms"] - base.sequential["p50_ms"], 3),
                "sequential_p99": round(row.sequential["p99_ms"] - base.sequential["p99_ms"], 3),
                "concurrent_p50": round(row.concurrent["p50_ms"] - base.concurrent["p50_ms"], 3),
                "concurrent_p99": round(row.concurrent["p99_ms"] - base.concurrent["p99_ms"], 3),
            }
            if row.streams.get("ttft_p50_ms") is not None and base.streams.get("ttft_p50_ms") is not None:
                entry["overhead_ms"]["ttft_p50"] = round(row.streams["ttft_p50_ms"] - base.streams["ttft_p50_ms"], 3)
        results.append(entry)
    litellm = next((entry for entry in results if entry["name"] == "litellm"), None)
    if litellm is not None:
        for entry in results:
            entry["ratio_to_litellm"] = _ratios(entry, litellm)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": _machine(),
        "settings": asdict(settings),
        "connections": CONNECTIONS,
        "results": results,
        "peer_present": peer is not None,
    }


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return round(value / reference, 3)


def _ratios(entry: dict[str, Any], litellm: dict[str, Any]) -> dict[str, float | None]:
    ratios = {
        "sequential_p50": _ratio(entry["sequential"]["p50_ms"], litellm["sequential"]["p50_ms"]),
        "sequential_p99": _ratio(entry["sequential"]["p99_ms"], litellm["sequential"]["p99_ms"]),
        "throughput": _ratio(entry["concurrent"]["rps"], litellm["concurrent"]["rps"]),
        "concurrent_p99": _ratio(entry["concurrent"]["p99_ms"], litellm["concurrent"]["p99_ms"]),
        "ttft_p50": _ratio(entry["streams"].get("ttft_p50_ms"), litellm["streams"].get("ttft_p50_ms")),
        "cpu_per_request": _ratio(entry["cpu_s_per_1k"], litellm["cpu_s_per_1k"]),
        "peak_rss": _ratio(entry["peak_rss_mib"], litellm["peak_rss_mib"]),
    }
    if "overhead_ms" in entry and "overhead_ms" in litellm:
        ratios["overhead_p50"] = _ratio(
            entry["overhead_ms"]["sequential_p50"], litellm["overhead_ms"]["sequential_p50"]
        )
        ratios["overhead_p99"] = _ratio(
            entry["overhead_ms"]["sequential_p99"], litellm["overhead_ms"]["sequential_p99"]
        )
    return ratios
