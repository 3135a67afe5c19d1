"""Server-sent events: an incremental parser and an event writer.

The parser follows the event stream interpretation rules of the WHATWG HTML standard.
Lines end in LF, CRLF or a lone CR. A line starting with ``:`` is a comment (servers
send them as keep-alives). ``field: value`` drops one leading space from the value, and
an empty line dispatches the event. Bytes
may be fed split anywhere, including inside a multi-byte UTF-8 character, because lines
are decoded only once they are complete and a line ending is always a single ASCII byte.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "format_comment", "format_event"]

_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event."""

    data: str
    """The data lines joined with ``\\n`` (without a trailing newline)."""
    event: str | None = None
    """The ``event:`` field, or None when the event had none (the spec's "message")."""
    id: str | None = None
    """The last event id seen on the stream so far, or None."""
    retry: int | None = None
    """The ``retry:`` reconnection time in milliseconds, when this event set one."""


class SSEParser:
    """Parse a byte stream of server-sent events incrementally.

    Call :meth:`feed` with each chunk read from the network; it returns the events that
    the chunk completed. An event that is still open when the stream ends is not
    dispatched, as the spec requires, and :attr:`has_pending` is then True.
    """

    __slots__ = ("_data", "_event", "_last_id", "_pending", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._pending = b""
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def has_pending(self) -> bool:
        """Whether an incomplete line or an undispatched event is buffered."""
        return bool(self._pending) or bool(self._data) or self._event is not None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk`` and return the events it completed, in order."""
        if self._skip_lf:
            # The previous chunk ended in CR: a LF at the start of this one belongs to it.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []

        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):
                self._skip_lf = True
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        lines = buffer.split(b"\n")
        self._pending = lines.pop()

        events: list[SSEEvent] = []
        for raw in lines:
            self._process_line(raw, events)
        return events

    def _process_line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            self._dispatch(events)
            return

        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            if line.startswith(_BOM):
                line = line[1:]
        if line.startswith(":"):
            return

        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]

        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        # Other field names are ignored, as the spec requires.

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(
                SSEEvent(
                    data="\n".join(self._data),
                    event=self._event or None,
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._data = []
        self._event = None
        self._retry = None


def format_event(data: bytes | str, event: str | None = None, id: str | None = None) -> bytes:
    """Encode one event; data containing newlines becomes several ``data:`` lines.

    Raises ValueError when ``event`` or ``id`` contains a line break, which would
    corrupt the stream.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data

    head = b""
    if event is not None:
        head += _field_line("event", event)
    if id is not None:
        head += _field_line("id", id)

    if b"\n" not in payload and b"\r" not in payload:
        return head + b"data: " + payload + b"\n\n"

    normalized = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    body = b"".join(b"data: " + line + b"\n" for line in normalized.split(b"\n"))
    return head + body + b"\n"


def format_comment(text: str = "") -> bytes:
    """Encode a comment line, which clients ignore; servers send one as a keep-alive."""
    if "\n" in text or "\r" in text:
        raise ValueError("an SSE comment must not contain a line break")
    return b": " + text.encode("utf-8") + b"\n\n" if text else b":\n\n"


def _field_line(name: str, value: str) -> bytes:
    if "\n" in value or "\r" in value:
        raise ValueError(f"the SSE {name} field must not contain a line break: {value!r}")
    return f"{name}: {value}\n".encode()
