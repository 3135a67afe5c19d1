"""Settlements on disk until the metering service has written them: a write-ahead log.

The router appends each settlement to the open segment file before it queues it, with
one ``write(2)``. A router that is killed, or stopped while metering is down, leaves the
undelivered settlements in the files, and the next router started on the directory sends
them again. Metering writes one ledger row per request id, so a settlement that reached
it before the restart is not counted twice.

A segment is a sequence of length-prefixed ``SettleRequest`` messages (a 4-byte little-endian
length, then the message). It is deleted once it is closed and every settlement in it
was delivered or rejected. Data reaches the page cache, not the disk: the files survive
a killed process, but a power loss can take the last seconds of them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aigateway.metering.v1 import metering_service_pb2 as metering_pb
from google.protobuf.message import DecodeError

from libs.grpcserver import StartError

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct("<I")
_PREFIX = "settlements-"
_SUFFIX = ".log"


class SpoolInUseError(StartError):
    """Another process holds the spool directory's lock."""


@dataclass
class _Segment:
    number: int
    fd: int | None
    records: int = 0
    pending: int = 0
    opened_at: float = 0.0


class SettlementSpool:
    """Segment files of settlements in ``directory``, used by one process at a time."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_records: int = 4096,
        segment_age_s: float = 10.0,
        max_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.segment_records = segment_records
        self.segment_age_s = segment_age_s
        self.max_bytes = max_bytes
        self.clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolInUseError(
                f"the settlement spool {directory} is in use by another process: "
                "give each router replica its own ROUTER_SPOOL_DIR"
            ) from None
        self._segments: dict[int, _Segment] = {}
        self._open: _Segment | None = None
        self._bytes = sum(path.stat().st_size for path in self._segment_paths())
        numbers = [self._number(path) for path in self._segment_paths()]
        self._next_number = max(numbers, default=0) + 1
        self._full_logged = False

    def _segment_paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}"))

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.name[len(_PREFIX) : -len(_SUFFIX)])

    def _path(self, number: int) -> Path:
        return self.directory / f"{_PREFIX}{number:012d}{_SUFFIX}"

    def recover(self) -> list[tuple[metering_pb.SettleRequest, int]]:
        """Return the settlements left by an earlier process, each with its segment number.

        Call once, before the first ``append``. A record cut short by a crash ends its
        segment's list and is logged.
        """
        recovered: list[tuple[metering_pb.SettleRequest, int]] = []
        for path in self._segment_paths():
            number = self._number(path)
            messages, torn = _read_segment(path)
            if torn:
                logger.warning(
                    "settlement spool segment ends in a cut record; it was skipped",
                    extra={"segment": path.name, "bytes": torn},
                )
            if not messages:
                self._remove(number, path)
                continue
            self._segments[number] = _Segment(number, None, len(messages), len(messages))
            recovered.extend((message, number) for message in messages)
        if recovered:
            logger.info("settlements recovered from the spool", extra={"count": len(recovered)})
        return recovered

    def append(self, message: metering_pb.SettleRequest) -> int | None:
        """Write ``message`` to the open segment and return the segment number.

        Returns None, and logs, when the spool is over ``max_bytes`` or the write failed:
        the settlement is then kept in memory only.
        """
        data = message.SerializeToString()
        record = _LENGTH.pack(len(data)) + data
        if self._bytes + len(record) > self.max_bytes:
            if not self._full_logged:
                logger.error(
                    "settlement spool full; new settlements are kept in memory only",
                    extra={"spool_bytes": self._bytes, "max_bytes": self.max_bytes},
                )
                self._full_logged = True
            return None
        try:
            segment = self._writable()
            assert segment.fd is not None
            _write_all(segment.fd, record)
        except OSError as exc:
            logger.error("settlement spool write failed; kept in memory only", extra={"error": exc.strerror})
            return None
        self._bytes += len(record)
        segment.records += 1
        segment.pending += 1
        return segment.number

    def delivered(self, number: int) -> None:
        """Mark one settlement of segment ``number`` as delivered (or rejected for good)."""
        segment = self._segments.get(number)
        if segment is None:
            return
        segment.pending -= 1
        if segment.pending <= 0 and segment is not self._open:
            self._remove(number, self._path(number))

    def close(self) -> None:
        """Close the open segment, delete it when nothing in it is pending, release the lock."""
        if self._open is not None:
            self._seal(self._open)
            self._open = None
        os.close(self._lock_fd)

    def _writable(self) -> _Segment:
        segment = self._open
        now = self.clock()
        if segment is not None and (
            segment.records >= self.segment_records or now - segment.opened_at >= self.segment_age_s
        ):
            self._seal(segment)
            segment = self._open = None
        if segment is None:
            number = self._next_number
            self._next_number += 1
            fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
            segment = self._open = self._segments[number] = _Segment(number, fd, opened_at=now)
        return segment

    def _seal(self, segment: _Segment) -> None:
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        if segment.pending <= 0:
            self._remove(segment.number, self._path(segment.number))

    def _remove(self, number: int, path: Path) -> None:
        self._segments.pop(number, None)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self._bytes = max(0, self._bytes - size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_segment(path: Path) -> tuple[list[metering_pb.SettleRequest], int]:
    """Return the segment's settlements and the number of bytes of a cut last record."""
    data = path.read_bytes()
    messages = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            break
        (length,) = _LENGTH.unpack_from(data, offset)
        end = offset + _LENGTH.size + length
        if end > len(data):
            break
        try:
            messages.append(metering_pb.SettleRequest.FromString(data[offset + _LENGTH.size : end]))
        except DecodeError:
            break
        offset = end
    return messages, len(data) - offset
