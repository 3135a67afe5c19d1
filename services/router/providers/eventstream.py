"""An incremental decoder for the AWS event-stream binary framing (``application/vnd.amazon.eventstream``).

Bedrock's ``converse-stream`` sends its events in this framing. Each message is:

- A 12-byte prelude: the total length and the headers length (big-endian uint32
  each), then the CRC32 of those 8 bytes.
- The headers. Each is a 1-byte name length, the name, a 1-byte value type and the
  value. Strings (type 7) and byte arrays (type 6) start with a 2-byte length, and the
  other types have the fixed sizes in ``_FIXED_SIZES``.
- The payload, then the CRC32 of every byte of the message before it.

Both checksums are verified. The total length counts the prelude, the headers, the
payload and the final checksum.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["EventStreamDecoder", "EventStreamError", "EventStreamMessage"]

_PRELUDE = struct.Struct(">II")
_PRELUDE_SIZE = 12
_CRC_SIZE = 4
_MIN_MESSAGE = _PRELUDE_SIZE + _CRC_SIZE
# The framing allows up to 16 MiB per message and 128 KiB of headers.
_MAX_MESSAGE = 16 * 1024 * 1024
_MAX_HEADERS = 128 * 1024

# Value types with a fixed size in bytes (booleans carry no bytes at all).
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_BYTES_TYPE = 6
_STRING_TYPE = 7


class EventStreamError(ValueError):
    """The bytes are not a valid event-stream message (bad length, checksum or header)."""


@dataclass(frozen=True)
class EventStreamMessage:
    """One decoded message: its headers and its raw payload."""

    headers: dict[str, Any]
    """Header values by name: str for strings, bytes for byte arrays, int, bool or UUID."""
    payload: bytes

    @property
    def message_type(self) -> str | None:
        """The ``:message-type`` header: "event", "exception" or "error"."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else None

    @property
    def event_type(self) -> str | None:
        """The ``:event-type`` header, such as "contentBlockDelta"."""
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else None


class EventStreamDecoder:
    """Decode event-stream messages from bytes that arrive in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def has_pending(self) -> bool:
        """Whether part of a message is buffered, as when a stream is cut mid-message."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        """Consume ``data`` and return the messages it completed, in order.

        Raises EventStreamError on a corrupt message; the decoder is unusable after that.
        """
        self._buffer.extend(data)
        messages: list[EventStreamMessage] = []
        while len(self._buffer) >= _PRELUDE_SIZE:
            total, headers_length = _PRELUDE.unpack_from(self._buffer, 0)
            (prelude_crc,) = struct.unpack_from(">I", self._buffer, 8)
            if zlib.crc32(self._buffer[:8]) != prelude_crc:
                raise EventStreamError("prelude checksum mismatch")
            if not _MIN_MESSAGE <= total <= _MAX_MESSAGE:
                raise EventStreamError(f"message length {total} is out of range")
            if headers_length > min(_MAX_HEADERS, total - _MIN_MESSAGE):
                raise EventStreamError(f"headers length {headers_length} is out of range")
            if len(self._buffer) < total:
                break

            message = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", message, total - _CRC_SIZE)
            if zlib.crc32(message[: total - _CRC_SIZE]) != message_crc:
                raise EventStreamError("message checksum mismatch")
            headers = _parse_headers(message[_PRELUDE_SIZE : _PRELUDE_SIZE + headers_length])
            payload = message[_PRELUDE_SIZE + headers_length : total - _CRC_SIZE]
            messages.append(EventStreamMessage(headers=headers, payload=payload))
        return messages


def _parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    position = 0
    while position < len(data):
        name_length = data[position]
        position += 1
        name = data[position : position + name_length].decode("utf-8", errors="replace")
        position += name_length
        if position >= len(data):
            raise EventStreamError(f"header {name!r} has no value type")
        value_type = data[position]
        position += 1

        if value_type in _FIXED_SIZES:
            size = _FIXED_SIZES[value_type]
            raw = data[position : position + size]
            if len(raw) != size:
                raise EventStreamError(f"header {name!r} is cut short")
            position += size
            headers[name] = _fixed_value(value_type, raw)
        elif value_type in (_BYTES_TYPE, _STRING_TYPE):
            if position + 2 > len(data):
                raise EventStreamError(f"header {name!r} is cut short")
            (length,) = struct.unpack_from(">H", data, position)
            position += 2
            raw = data[position : position + length]
            if len(raw) != length:
                raise EventStreamError(f"header {name!r} is cut short")
            position += length
            headers[name] = raw.decode("utf-8", errors="replace") if value_type == _STRING_TYPE else raw
        else:
            raise EventStreamError(f"header {name!r} has unknown value type {value_type}")
    return headers


def _fixed_value(value_type: int, raw: bytes) -> Any:
    if value_type == 0:
        return True
    if value_type == 1:
        return False
    if value_type == 9:
        return uuid.UUID(bytes=raw)
    # Byte, short, integer, long and timestamp (milliseconds since the epoch) are signed.
    return int.from_bytes(raw, "big", signed=True)
