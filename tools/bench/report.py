"""Write benchmark results as Markdown tables between markers in docs/benchmarks.md.

Text outside the markers (method notes, what each change bought) is kept as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- tools.bench: generated results begin -->"
END = "<!-- tools.bench: generated results end -->"


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ttft(streams: dict[str, Any]) -> str:
    if streams.get("errors"):
        if streams.get("ttft_p50_ms") is None:
            return f"failed ({streams['errors']} of {streams['requests']})"
        return f"{streams['ttft_p50_ms']:.2f} ({streams['errors']} failed)"
    return _number(streams.get("ttft_p50_ms"))


def render(results: dict[str, Any]) -> str:
    """Return the generated section: setup, absolute results and ratios to LiteLLM."""
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        BEGIN,
        "",
        f"Run on {results['date']}: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}, "
        f"load from {machine['load_generator']}.",
        "",
        f"Settings: {settings['sequential_requests']} sequential requests, "
        f"{results['connections']} connections for {settings['seconds']:g} s, "
        f"{settings['stream_requests']} sequential streams, answers of about "
        f"{settings['answer_bytes']} bytes.",
        "",
        "| target | version | seq p50 ms | seq p99 ms | overhead p50 ms | overhead p99 ms "
        "| req/s at 32 | p99 ms at 32 | stream TTFT p50 ms | CPU s per 1k req | peak RSS MiB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["results"]:
        overhead = entry.get("overhead_ms", {})
        lines.append(
            "| "
            + " | ".join(
                [
                    entry["label"],
                    entry["version"],
                    _number(entry["sequential"]["p50_ms"]),
                    _number(entry["sequential"]["p99_ms"]),
                    _number(overhead.get("sequential_p50")),
                    _number(overhead.get("sequential_p99")),
                    _number(entry["concurrent"]["rps"], 0),
                    _number(entry["concurrent"]["p99_ms"]),
                    _ttft(entry["streams"]),
                    _number(entry["cpu_s_per_1k"]),
                    _number(entry["peak_rss_mib"], 0),
                    str(entry["errors"]),
                ]
            )
            + " |"
        )
    if any("ratio_to_litellm" in entry for entry in results["results"]):
        lines += [
            "",
            "Ratios to LiteLLM from the same run (below 1 is better, except throughput):",
            "",
            "| target | seq p50 | seq p99 | overhead p50 | overhead p99 | throughput "
            "| p99 at 32 | TTFT p50 | CPU per req | peak RSS |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for entry in results["results"]:
            ratios = entry.get("ratio_to_litellm") or {}
            keys = [
                "sequential_p50",
                "sequential_p99",
                "overhead_p50",
                "overhead_p99",
                "throughput",
                "concurrent_p99",
                "ttft_p50",
                "cpu_per_request",
                "peak_rss",
            ]
            lines.append("| " + " | ".join([entry["label"], *(_number(ratios.get(k), 3) for k in keys)]) + " |")
    notes = [(entry["label"], note) for entry in results["results"] for note in entry["notes"]]
    cache_lines = []
    for entry in results["results"]:
        cache = entry["concurrent"].get("cache") or {}
        if any(cache.values()):
            counts = ", ".join(f"{name} {count}" for name, count in cache.items() if count)
            cache_lines.append(f"- {entry['label']}: {counts}")
    if cache_lines:
        lines += ["", "`x-aigw-cache` of the responses in the concurrent phase:", "", *cache_lines]
    if notes:
        lines += ["", "Notes:", "", *(f"- {label}: {note}" for label, note in notes)]
    lines += ["", END]
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Replace the generated section of ``path``, or create the file with only that section."""
    section = render(results)
    if path.exists():
        text = path.read_text()
        start, end = text.find(BEGIN), text.find(END)
        if start != -1 and end != -1:
            path.write_text(text[:start] + section + text[end + len(END) :])
            return
        path.write_text(text.rstrip() + "\n\n" + section + "\n")
        return
    path.write_text("# Benchmarks\n\n" + section + "\n")
