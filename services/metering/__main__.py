"""Run the metering service: ``python -m services.metering`` (settings from METERING_*)."""

from libs.grpcserver import main
from services.metering.config import MeteringConfig
from services.metering.server import build

VERSION = "0.1.0"

if __name__ == "__main__":
    raise SystemExit(
        main("metering", MeteringConfig.from_env, build, MeteringConfig.summary, version=VERSION)
    )
