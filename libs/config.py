"""Reading service configuration from environment variables.

Every service reads its settings once at startup into a frozen dataclass. A missing or
malformed value raises :class:`ConfigError` naming the variable, so the process fails
at start instead of at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


class Env:
    """Typed access to the environment variables of one service, all under one prefix."""

    def __init__(self, prefix: str, environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self.environ = os.environ if environ is None else environ

    def name(self, key: str) -> str:
        """Return the full variable name for ``key``."""
        return f"{self.prefix}_{key}"

    def str(self, key: str, default: str | None = None) -> str:
        """Return the value; raise ConfigError when it is unset and has no default."""
        value = self.environ.get(self.name(key))
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"environment variable {self.name(key)} is required but not set")
            return default
        return value

    def optional(self, key: str) -> str | None:
        """Return the value, or None when unset or empty."""
        value = self.environ.get(self.name(key))
        return value or None

    def int(self, key: str, default: int) -> int:
        """Return the value as an integer."""
        text = self.environ.get(self.name(key))
        if not text:
            return default
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{self.name(key)}={text!r} is not an integer") from None

    def float(self, key: str, default: float) -> float:
        """Return the value as a float."""
        text = self.environ.get(self.name(key))
        if not text:
            return default
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{self.name(key)}={text!r} is not a number") from None

    def bool(self, key: str, default: bool) -> bool:
        """Return the value as a boolean: 1/true/yes/on or 0/false/no/off."""
        text = self.environ.get(self.name(key))
        if not text:
            return default
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{self.name(key)}={text!r} is not a boolean: use true or false")

    def address(self, key: str, default: str | None = None) -> str:
        """Return a ``host:port`` value or a gRPC target such as ``dns:///host:port``, checking the port."""
        value = self.str(key, default)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{self.name(key)}={value!r} is not host:port")
        return value
