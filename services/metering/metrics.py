"""Prometheus metrics of the metering service, in the default registry.

Label values are model and provider names from the router's catalog and a fixed set of
outcomes and reasons. Tenants, key ids and other caller text never become labels.
Because metering cannot check names against the catalog, :class:`LabelGuard` replaces
malformed names, and every name beyond a cap, with ``other`` to bound the series count.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from services.metering.ledger import UsageRecord

TOKENS = Counter(
    "aigw_tokens_total",
    "Tokens of settled requests by type: prompt, completion, and cached (cached prompt "
    "tokens, which prompt also counts).",
    ["model", "provider", "type"],
)
COST = Counter(
    "aigw_cost_usd_total", "Cost of settled requests in US dollars.", ["model", "provider"]
)
REQUESTS = Counter(
    "aigw_requests_total",
    "Settled requests by outcome (ok, cache_hit, error, cancelled, or other).",
    ["model", "provider", "outcome"],
)
BUDGET_REJECTIONS = Counter(
    "aigw_budget_rejections_total",
    "Requests that Admit rejected, by reason (BUDGET_EXCEEDED, RATE_LIMITED).",
    ["reason"],
)
OUTBOX_ROWS = Gauge(
    "aigw_metering_outbox_rows",
    "Settlements held in memory because the ledger database could not be written.",
)
OUTBOX_DROPPED = Counter(
    "aigw_metering_outbox_dropped_total",
    "Settlements dropped from the outbox because the database rejected the row itself.",
)

OTHER = "other"
KNOWN_OUTCOMES = frozenset({"ok", "cache_hit", "error", "cancelled"})
NO_PROVIDER = "none"


class LabelGuard:
    """Map names to label values: well-formed names pass until ``max_values`` are in use."""

    _PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")

    def __init__(self, max_values: int) -> None:
        self.max_values = max_values
        self._seen: set[str] = set()

    def value(self, name: str) -> str:
        """Return ``name`` when it may be a label value, else ``other``."""
        if name in self._seen:
            return name
        if len(self._seen) >= self.max_values or not self._PATTERN.fullmatch(name):
            return OTHER
        self._seen.add(name)
        return name


_models = LabelGuard(max_values=1000)
_providers = LabelGuard(max_values=100)


def observe_settlement(record: UsageRecord) -> None:
    """Count the tokens, cost and outcome of one newly recorded settlement."""
    model = _models.value(record.model)
    provider = _providers.value(record.provider) if record.provider else NO_PROVIDER
    outcome = record.outcome if record.outcome in KNOWN_OUTCOMES else OTHER

    TOKENS.labels(model, provider, "prompt").inc(record.prompt_tokens)
    TOKENS.labels(model, provider, "completion").inc(record.completion_tokens)
    TOKENS.labels(model, provider, "cached").inc(record.cached_tokens)
    COST.labels(model, provider).inc(float(record.cost_usd))
    REQUESTS.labels(model, provider, outcome).inc()
