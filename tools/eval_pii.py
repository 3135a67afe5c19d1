"""Recall and precision of the PII redactor on a labelled set: ``python -m tools.eval_pii FILE``.

FILE contains JSON lines ``{"id", "text", "entities": [{"type", "value"}]}``. Each value is
an exact substring of the text, and every occurrence of it is that entity. A detected span
counts as a true positive when its type and text equal a labelled entity of its line.
The script prints counts per type, and ``--show`` lists the misses and false alarms.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from services.security.pii import SUPPORTED_TYPES, PiiRedactor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.eval_pii", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="labelled JSON lines")
    parser.add_argument("--show", action="store_true", help="list each miss and false alarm")
    args = parser.parse_args(argv)

    redactor = PiiRedactor()
    hits: Counter[str] = Counter()
    misses: Counter[str] = Counter()
    false_alarms: Counter[str] = Counter()
    details: list[str] = []
    try:
        lines = args.file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        parser.error(f"cannot read {args.file}: {exc.strerror}")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
            text = case["text"]
            expected = {(entity["type"], entity["value"]) for entity in case["entities"]}
        except (ValueError, KeyError, TypeError):
            parser.error(f"{args.file}:{number}: not a JSON object with text and entities fields")
        found = {(entity.type, text[entity.start : entity.end]) for entity in redactor.detect(text)}
        for entity_type, _ in found & expected:
            hits[entity_type] += 1
        for entity_type, value in expected - found:
            misses[entity_type] += 1
            details.append(f"miss        {case['id']} {entity_type}: {value!r}")
        for entity_type, value in found - expected:
            false_alarms[entity_type] += 1
            details.append(f"false alarm {case['id']} {entity_type}: {value!r}")

    print(f"{'type':<14} {'labelled':>8} {'found':>6} {'false':>6} {'recall':>7} {'precision':>9}")
    for entity_type in sorted(set(hits) | set(misses) | set(false_alarms)):
        labelled = hits[entity_type] + misses[entity_type]
        detected = hits[entity_type] + false_alarms[entity_type]
        recall = f"{hits[entity_type] / labelled:.2f}" if labelled else "-"
        precision = f"{hits[entity_type] / detected:.2f}" if detected else "-"
        supported = "" if entity_type in SUPPORTED_TYPES else "  (not detected)"
        print(
            f"{entity_type:<14} {labelled:>8} {hits[entity_type]:>6} {false_alarms[entity_type]:>6} "
            f"{recall:>7} {precision:>9}{supported}"
        )
    if args.show:
        print("\n".join(sorted(details)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
