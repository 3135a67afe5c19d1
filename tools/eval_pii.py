"""Recall and precision of the PII redactor on a labelled set: ``python -m tools.eval_pii FILE``.

FILE contains JSON lines ``{"id", "text", "entities": [{"type", "value"}]}``. Each value is
an exact substring of the text, and every occurrence of it is that entity. A detected span
counts as a true positive when its type and text equal a labelled entity of its line.
The script prints counts per type, and ``--show`` lists the misses and false alarms.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from services.security.pii import SUPPORTED_TYPES, PiiRedactor
from tools.labelled import LabelledFileError, read_cases


def entity_sets(redactor: PiiRedactor, case: dict[str, Any]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Return the labelled and the detected (type, text) pairs of one case."""
    text = case["text"]
    expected = {(entity["type"], entity["value"]) for entity in case["entities"]}
    found = {(entity.type, text[entity.start : entity.end]) for entity in redactor.detect(text)}
    return expected, found


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
        cases = read_cases(args.file, ("text", "entities"))
    except LabelledFileError as exc:
        parser.error(str(exc))
    for number, case in cases:
        try:
            expected, found = entity_sets(redactor, case)
        except (KeyError, TypeError):
            parser.error(f"{args.file}:{number}: each entity must be an object with type and value")
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
