"""Run the cache service: ``python -m services.cache`` (settings from CACHE_*)."""

from libs.grpcserver import main
from services.cache.config import CacheConfig
from services.cache.server import build

VERSION = "0.1.0"

if __name__ == "__main__":
    raise SystemExit(
        main(
            "cache", CacheConfig.from_env, build,
            lambda config: {"semantic_cache": config.database_url is not None,
                            "redis": config.redis_url is not None, "ttl_s": config.ttl_s},
            version=VERSION,
        )
    )
