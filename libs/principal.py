"""The authenticated caller, as the edge passes it to every service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Metadata keys that Envoy sets from the ext_authz response. Envoy strips any a client sends.
TENANT_HEADER = "x-aigw-tenant"
KEY_ID_HEADER = "x-aigw-key-id"
ROLES_HEADER = "x-aigw-roles"
ALLOWED_MODELS_HEADER = "x-aigw-allowed-models"
BUDGET_HEADER = "x-aigw-budget-usd"
PRINCIPAL_HEADERS = (TENANT_HEADER, KEY_ID_HEADER, ROLES_HEADER, ALLOWED_MODELS_HEADER, BUDGET_HEADER)


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, its API key (or token subject) and what it may do."""

    tenant: str
    """Tenant id; every cache entry, ledger row and limit is scoped to it."""
    key_id: str
    """Public id of the API key, or the subject of a JWT."""
    roles: tuple[str, ...] = ()
    """Roles the authorization policy decides on, such as ``user`` or ``premium``."""
    allowed_models: tuple[str, ...] = ()
    """Public model names this key is limited to; empty means whatever the roles allow."""
    budget_usd: float | None = None
    """Spending limit of the key in US dollars; None means no limit."""

    def to_headers(self) -> dict[str, str]:
        """Return the principal as the metadata the edge sets."""
        headers = {
            TENANT_HEADER: self.tenant,
            KEY_ID_HEADER: self.key_id,
            ROLES_HEADER: ",".join(self.roles),
            ALLOWED_MODELS_HEADER: ",".join(self.allowed_models),
        }
        if self.budget_usd is not None:
            headers[BUDGET_HEADER] = repr(self.budget_usd)
        return headers

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | Iterable[tuple[str, str]]) -> Principal | None:
        """Build the principal from gRPC metadata; None when the edge set no tenant."""
        items = metadata.items() if isinstance(metadata, Mapping) else metadata
        values = {key.lower(): value for key, value in items if isinstance(value, str)}
        tenant = values.get(TENANT_HEADER, "")
        key_id = values.get(KEY_ID_HEADER, "")
        if not tenant or not key_id:
            return None
        budget_text = values.get(BUDGET_HEADER, "")
        try:
            budget = float(budget_text) if budget_text else None
        except ValueError:
            budget = None
        return cls(
            tenant=tenant,
            key_id=key_id,
            roles=_split(values.get(ROLES_HEADER, "")),
            allowed_models=_split(values.get(ALLOWED_MODELS_HEADER, "")),
            budget_usd=budget,
        )


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
