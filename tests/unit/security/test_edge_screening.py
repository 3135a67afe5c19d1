"""Edge screening in the ext_authz call: which requests it screens, and the digest the
router must reproduce."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from libs.config import ConfigError
from libs.principal import Principal
from libs.screening import prompt_roles_and_texts, screened_digest
from services.security.edge_screening import EdgeScreener, load_model_attributes

PRINCIPAL = Principal(tenant="acme", key_id="key-1", roles=("user",))
ATTRIBUTES = {"gpt-4o-mini": {"tier": "standard"}}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name three rivers."}]}


class Recorder:
    def __init__(self, clean: bool = True, error: Exception | None = None) -> None:
        self.clean = clean
        self.error = error
        self.calls: list[tuple[str, list[tuple[str, str]]]] = []

    async def __call__(
        self, request_id: str, principal: Principal, model: str, attributes: Mapping[str, str], texts: Any
    ) -> bool:
        self.calls.append((model, texts))
        if self.error is not None:
            raise self.error
        return self.clean


def _http(body: Any = BODY, path: str = "/v1/chat/completions", **headers: str) -> SimpleNamespace:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return SimpleNamespace(method="POST", path=path, headers=headers, raw_body=raw, body="")


async def test_clean_prompt_gets_the_digest_the_router_computes() -> None:
    screen = Recorder()

    digest = await EdgeScreener(ATTRIBUTES, screen).digest(_http(), "req-1", PRINCIPAL)

    assert digest == screened_digest("gpt-4o-mini", {"tier": "standard"}, prompt_roles_and_texts(BODY))
    assert screen.calls == [("gpt-4o-mini", [("user", "Name three rivers.")])]


@pytest.mark.parametrize(
    "http",
    [
        _http(path="/v1/messages"),
        _http(**{"x-envoy-auth-partial-body": "true"}),
        _http(body=b'{"model": "gpt-4o-mini", "messages": ['),
        _http(body={"model": "not-in-catalog", "messages": [{"role": "user", "content": "hi"}]}),
        _http(body={"model": "gpt-4o-mini", "messages": "hi"}),
        _http(body=b""),
    ],
    ids=["other-surface", "cut-body", "bad-json", "unknown-model", "bad-messages", "no-body"],
)
async def test_left_to_the_router(http: SimpleNamespace) -> None:
    assert await EdgeScreener(ATTRIBUTES, Recorder()).digest(http, "req-1", PRINCIPAL) is None


async def test_no_digest_without_clean_screening() -> None:
    for screen in (Recorder(clean=False), Recorder(error=ConnectionError("policy engine down"))):
        assert await EdgeScreener(ATTRIBUTES, screen).digest(_http(), "req-1", PRINCIPAL) is None


def test_digest_changes_with_model_attributes_and_texts() -> None:
    texts = [("user", "Name three rivers.")]
    base = screened_digest("gpt-4o-mini", {"tier": "standard"}, texts)

    assert screened_digest("gpt-4o-mini", {"tier": "premium"}, texts) != base
    assert screened_digest("gpt-4o", {"tier": "standard"}, texts) != base
    assert screened_digest("gpt-4o-mini", {"tier": "standard"}, [("system", "Name three rivers.")]) != base


def test_catalog_attributes_skip_expanded_values(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "models:\n"
        "  - name: plain\n    attributes: {tier: standard}\n"
        "  - name: none\n"
        "  - name: expanded\n    attributes: {tier: '${MODEL_TIER}'}\n"
    )

    assert load_model_attributes(catalog) == {"plain": {"tier": "standard"}, "none": {}}


def test_demo_catalog_loads() -> None:
    attributes = load_model_attributes(Path(__file__).parents[3] / "deploy" / "catalog" / "demo.yaml")

    assert attributes["gpt-4o-mini"] == {"tier": "standard"}


async def test_invalid_request_is_left_to_the_router() -> None:
    screen = Recorder()
    body = {**BODY, "temperature": "hot"}

    digest = await EdgeScreener(ATTRIBUTES, screen).digest(_http(body), "req-1", PRINCIPAL)

    assert digest is None
    assert screen.calls == []


async def test_failure_pauses_edge_screening() -> None:
    screen = Recorder(error=ConnectionError("policy engine timed out"))
    screener = EdgeScreener(ATTRIBUTES, screen)

    first = await screener.digest(_http(), "req-1", PRINCIPAL)
    screen.error = None
    second = await screener.digest(_http(), "req-2", PRINCIPAL)

    assert first is None
    assert second is None
    assert len(screen.calls) == 1


@pytest.mark.parametrize("text", ["models: 5\n", "- just a list\n", "models:\n  nested: {}\n"])
def test_malformed_catalog_is_a_config_error(tmp_path: Path, text: str) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(text)

    with pytest.raises(ConfigError, match="SECURITY_CATALOG"):
        load_model_attributes(catalog)
