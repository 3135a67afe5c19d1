"""Recall and false alarms of the injection screen on a labelled set: ``python -m tools.eval_injection FILE``.

FILE contains JSON lines ``{"id", "text", "label", "technique"}`` where ``label`` is
``injection`` or ``benign``. The script prints, per technique, how many lines the screen
blocked, then the recall on injections and the false-alarm rate on benign lines.
``--show`` lists each miss and false alarm with its score.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from services.security.injection import InjectionDetector
from tools.labelled import LabelledFileError, read_cases

LABELS = ("injection", "benign")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_injection", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="labelled JSON lines")
    parser.add_argument("--show", action="store_true", help="list each miss and false alarm")
    args = parser.parse_args(argv)

    detector = InjectionDetector()
    lines: Counter[tuple[str, str]] = Counter()
    blocked: Counter[tuple[str, str]] = Counter()
    details: list[str] = []
    try:
        cases = read_cases(args.file, ("text", "label"))
    except LabelledFileError as exc:
        parser.error(str(exc))
    for number, case in cases:
        label = case["label"]
        if label not in LABELS:
            parser.error(f"{args.file}:{number}: label must be injection or benign, got {label!r}")
        key = (label, str(case.get("technique") or "-"))
        verdict = detector.scan(case["text"])
        lines[key] += 1
        if verdict.blocked:
            blocked[key] += 1
        if verdict.blocked != (label == "injection"):
            kind = "false alarm" if verdict.blocked else "miss"
            details.append(f"{kind:<11} {case.get('id', number)} score {verdict.score:.2f}: {case['text'][:100]!r}")

    print(f"{'label':<10} {'technique':<26} {'lines':>5} {'blocked':>7}")
    for label, technique in sorted(lines):
        print(f"{label:<10} {technique:<26} {lines[label, technique]:>5} {blocked[label, technique]:>7}")
    for label, measure in (("injection", "recall"), ("benign", "false alarms")):
        total = sum(count for (kind, _), count in lines.items() if kind == label)
        hits = sum(count for (kind, _), count in blocked.items() if kind == label)
        rate = f"{hits / total:.3f}" if total else "-"
        print(f"{measure}: {rate} ({hits} of {total} {label} lines blocked)")
    if args.show:
        print("\n".join(sorted(details)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
