"""Shared pytest set-up: every module in tests/fixtures/ is loaded as a plugin."""

import pathlib

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
