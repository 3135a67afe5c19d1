"""Run the router: ``python -m services.router`` (settings from ROUTER_* variables)."""

from libs.grpcserver import main
from services.router.config import RouterConfig
from services.router.server import build

VERSION = "0.1.0"

if __name__ == "__main__":
    raise SystemExit(
        main(
            "router", RouterConfig.from_env, build,
            lambda config: {"catalog": str(config.catalog_path), "security": config.security_address,
                            "cache": config.cache_address, "metering": config.metering_address,
                            "semantic_cache": config.semantic_cache},
            version=VERSION,
        )
    )
