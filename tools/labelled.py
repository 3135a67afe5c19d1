"""Reading of labelled JSON Lines files, shared by the evaluation tools and their tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class LabelledFileError(ValueError):
    """A labelled file is missing, unreadable, or has a line that is not a valid case."""


def read_cases(path: Path, fields: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """Return each non-blank line of ``path`` as (line number, JSON object).

    Raises LabelledFileError naming the file, and the line where one is at fault, when
    the file cannot be read or a line is not a JSON object with every one of ``fields``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelledFileError(f"cannot read {path}: {exc.strerror}") from None
    cases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError:
            case = None
        if not isinstance(case, dict) or any(field not in case for field in fields):
            raise LabelledFileError(f"{path}:{number}: not a JSON object with fields {', '.join(fields)}")
        cases.append((number, case))
    return cases
