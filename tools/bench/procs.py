"""CPU time and resident memory of process trees, read from /proc (Linux only)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name in brackets may contain spaces, so split after its closing bracket.
    return text[text.rindex(")") + 2 :].split()


def process_tree(roots: Iterable[int]) -> set[int]:
    """Return ``roots`` and every live descendant of them."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid for pid in roots if (PROC / str(pid)).exists()]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return the user plus system CPU seconds the live processes ``pids`` have used."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # Fields 14 and 15 of /proc/PID/stat (utime, stime), counted after the name.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def context_switches(pids: Iterable[int]) -> int:
    """Return the context switches, voluntary and not, of every thread of the live ``pids``."""
    total = 0
    for pid in pids:
        try:
            tasks = list((PROC / str(pid) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    """Return the summed resident set size of the live processes ``pids``, in bytes."""
    total = 0
    for pid in pids:
        try:
            resident_pages = int((PROC / str(pid) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * PAGE_BYTES
    return total


class RssSampler:
    """Sample the summed RSS of a process tree on a thread and keep the maximum.

    Pages shared between processes (PostgreSQL's shared buffers, forked workers) count
    once per process, so the sum overstates the memory the tree really holds.
    """

    def __init__(self, roots: Callable[[], Iterable[int]], interval_s: float = 0.2) -> None:
        self._roots = roots
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_bytes = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Take one sample now."""
        self.peak_bytes = max(self.peak_bytes, rss_bytes(process_tree(self._roots())))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)
