"""Prometheus metrics of the cache service."""

from prometheus_client import Counter, Gauge

LOOKUPS = Counter("aigw_cache_service_lookups_total", "Cache lookups by result (exact, semantic, miss).", ["result"])
SEMANTIC_REJECTIONS = Counter(
    "aigw_cache_semantic_rejections_total",
    "Semantic candidates the guard rejected, by reason (below_threshold, entity_mismatch, ...).",
    ["reason"],
)
DIGEST_FILL = Gauge(
    "aigw_cache_key_digest_fill_ratio",
    "Share of the key digest's bits that are set, as last served. False positives grow with it.",
)
