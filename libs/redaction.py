"""Restore redacted values in model output, whole or streamed.

The security service replaces PII in a prompt with placeholders such as ``[EMAIL_1]``
and returns the mapping from placeholder to original value. The router puts the values
back into the model's response with :func:`restore`, or, for streamed answers, with a
:class:`StreamRestorer` that holds back a trailing fragment until it is known whether it
starts a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Same shape as the placeholders services.security.pii writes: "[", an upper-case type
# name, "_", a number, "]". A placeholder contains no "[" after its first character,
# which the stream restorer relies on.
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Return ``text`` with every placeholder in ``mapping`` replaced by its original value.

    Placeholder-shaped text that is not in ``mapping`` is left as it is.
    """
    if not mapping or "[" not in text:
        return text
    return _PLACEHOLDER.sub(lambda match: mapping.get(match.group(0), match.group(0)), text)


class StreamRestorer:
    """Restore placeholders in a stream of text deltas that may split a placeholder anywhere.

    The concatenation of everything :meth:`feed` and :meth:`flush` return equals
    ``restore`` applied to the concatenation of all deltas.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        """Restore the placeholders of ``mapping`` (placeholder to original value)."""
        self._mapping = mapping
        # Every proper prefix of every placeholder ("[", "[E", ..., "[EMAIL_1"): a tail of
        # the buffer in this set may still become a placeholder.
        self._prefixes = frozenset(
            placeholder[:length]
            for placeholder in mapping
            for length in range(1, len(placeholder))
        )
        self._max_prefix = max((len(p) for p in self._prefixes), default=0)
        self._pending = ""

    def feed(self, delta: str) -> str:
        """Return the restored text that is safe to emit after ``delta``.

        A trailing fragment that could be the start of a placeholder is held back
        until a later delta completes or rules it out.
        """
        if not self._mapping:
            return delta
        buffer = self._pending + delta
        cut = buffer.rfind("[")
        if cut >= 0 and len(buffer) - cut <= self._max_prefix and buffer[cut:] in self._prefixes:
            self._pending = buffer[cut:]
            return restore(buffer[:cut], self._mapping)
        self._pending = ""
        return restore(buffer, self._mapping)

    def flush(self) -> str:
        """Return the held-back text at the end of the stream and reset the restorer."""
        pending, self._pending = self._pending, ""
        return pending
