"""Shared pytest set-up: every module in tests/fixtures/ is loaded as a plugin."""

import os
import pathlib

# Child processes (PostgreSQL, Envoy, the services) are forked from this process, where
# grpc is loaded; gRPC's fork handlers are not needed and can crash a forked child.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
