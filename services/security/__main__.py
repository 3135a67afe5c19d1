"""Run the security service: ``python -m services.security`` (settings from SECURITY_*)."""

from libs.grpcserver import main
from services.security.config import SecurityConfig
from services.security.server import build

VERSION = "0.1.0"

if __name__ == "__main__":
    raise SystemExit(
        main(
            "security",
            SecurityConfig.from_env,
            build,
            lambda config: {
                "cerbos": config.cerbos_address,
                "key_cache_ttl_s": config.key_cache_ttl_s,
                "jwt_issuer": config.jwt.issuer if config.jwt else None,
            },
            version=VERSION,
        )
    )
