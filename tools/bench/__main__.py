"""Command line: ``python -m tools.bench`` (what ``make bench`` runs).

``BENCH_SECONDS`` (or ``--seconds``) sets the length of each concurrent phase. A run of
20 s or more is a full run and rewrites the generated part of docs/benchmarks.md and
docs/benchmarks.json; a shorter one writes its results under .bench/ only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from tools.bench.report import write_markdown
from tools.bench.run import Settings, run
from tools.bench.targets import BENCH_DIR, ROOT, TargetError
from tools.bench.wrk import WrkError, ensure_wrk

FULL_RUN_SECONDS = 20.0
DOCS = ROOT / "docs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Benchmark this gateway against LiteLLM proxy and Portkey gateway on 127.0.0.1.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("BENCH_SECONDS") or 30),
        help="length of each concurrent phase in seconds (default: BENCH_SECONDS or 30)",
    )
    parser.add_argument(
        "--targets",
        default="simulator,gateway,gateway-semantic-off,litellm,portkey",
        help=(
            "comma-separated targets to run (default: all five); gateway-semantic-off is a "
            "second gateway with ROUTER_SEMANTIC_CACHE=false"
        ),
    )
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error(f"--seconds must be at least 1, got {args.seconds:g}")

    full = args.seconds >= FULL_RUN_SECONDS
    settings = Settings(
        seconds=args.seconds,
        sequential_requests=2000 if full else 500,
        stream_requests=300 if full else 50,
        targets=tuple(name.strip() for name in args.targets.split(",") if name.strip()),
    )
    run_dir = BENCH_DIR / "runs" / time.strftime("%Y%m%d-%H%M%S")
    try:
        ensure_wrk()  # before any peer is installed or started
        results = run(settings, run_dir)
    except (TargetError, WrkError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1

    out_dir = DOCS if full else run_dir
    (out_dir / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out_dir / "benchmarks.md")
    print(f"bench: wrote {out_dir / 'benchmarks.md'} and benchmarks.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
