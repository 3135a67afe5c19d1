"""Prometheus metrics of the security service."""

from prometheus_client import Counter

AUTH_DECISIONS = Counter(
    "aigw_auth_decisions_total",
    "Edge authentication decisions (allowed, missing_key, invalid_key, invalid_token).",
    ["decision"],
)
SCREEN_DECISIONS = Counter(
    "aigw_screen_decisions_total",
    "Prompt screening decisions (allowed, model_not_allowed, prompt_injection).",
    ["decision"],
)
PII_REDACTIONS = Counter(
    "aigw_pii_redactions_total", "PII values replaced by placeholders, by entity type.", ["entity_type"]
)
EDGE_SCREENING_FAILURES = Counter(
    "aigw_edge_screening_failures_total",
    "Prompt screenings in the ext_authz check that failed and were left to the router.",
)
