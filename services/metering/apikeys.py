"""The API key that budgets and rate limits are kept for."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class ApiKey:
    """An API key of a tenant. Budgets and limits are kept per tenant and key id, so equal
    key ids of two tenants never share them."""

    tenant: str
    key_id: str

    @property
    def quota_subject(self) -> str:
        """Return the subject named in a ``QuotaFailure``: the public key id, never the key."""
        return f"api_key:{self.key_id}"

    @property
    def redis_tag(self) -> str:
        """Return the Redis Cluster hash tag shared by every key of this API key.

        One tag puts the budget, reservation and rate-limit keys in one slot, so a Lua
        script may touch them together. Quoting keeps ``{``, ``}`` and ``:`` in ids from
        breaking the tag or colliding with another tenant's key.
        """
        return "{" + quote(self.tenant, safe="") + ":" + quote(self.key_id, safe="") + "}"
