"""Tests for loading and validating the model catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.router.catalog import Catalog, CatalogError, ModelNotFoundError, Price

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO = REPO_ROOT / "deploy" / "catalog" / "demo.yaml"

VALID = """
models:
  - name: chat-small
    owned_by: example
    attributes: {tier: standard, region: eu}
    price: {input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075}
    timeout_s: 12
    deployments:
      - name: primary
        provider: openai
        upstream_model: small-v1
        base_url: ${TEST_UPSTREAM:-http://127.0.0.1:9}/v1/
        api_key_env: TEST_KEY_VAR
        priority: 1
      - id: chat-small/claude
        provider: anthropic
        upstream_model: claude-x
        base_url: http://127.0.0.1:9
        api_key_env: null
        price: {input_per_mtok: 1, output_per_mtok: 2, cached_input_per_mtok: 0.1}
        timeout_s: 5
        stream_idle_timeout_s: 2
        weight: 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_valid_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_UPSTREAM", raising=False)
    catalog = Catalog.load(write(tmp_path, VALID))

    group = catalog.get("chat-small")
    assert group.owned_by == "example"
    assert group.strategy == "priority"
    assert dict(group.attributes) == {"tier": "standard", "region": "eu"}

    primary, claude = group.deployments
    assert primary.id == "chat-small/primary"
    assert primary.base_url == "http://127.0.0.1:9/v1"
    assert primary.api_key_env == "TEST_KEY_VAR"
    assert primary.price == Price(0.15, 0.6, 0.075)
    assert primary.timeout_s == 12.0
    assert primary.idle_timeout_s == 12.0
    assert primary.priority == 1
    assert primary.weight == 1.0

    assert claude.id == "chat-small/claude"
    assert claude.provider == "anthropic"
    assert claude.api_key_env is None
    assert claude.price == Price(1.0, 2.0, 0.1)
    assert claude.timeout_s == 5.0
    assert claude.idle_timeout_s == 2.0
    assert claude.weight == 3.0


def test_env_substitution_uses_set_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM", "https://llm.example.com")
    catalog = Catalog.load(write(tmp_path, VALID))
    assert catalog.get("chat-small").deployments[0].base_url == "https://llm.example.com/v1"


def test_env_substitution_default_when_empty() -> None:
    document = _document(base_url="${EMPTY_VAR:-http://fallback:1}")
    catalog = Catalog.from_mapping(document, environ={"EMPTY_VAR": ""})
    assert catalog.get("m").deployments[0].base_url == "http://fallback:1"


def test_env_substitution_escape() -> None:
    document = _document(upstream_model="literal-$${NOT_A_VAR}")
    catalog = Catalog.from_mapping(document, environ={})
    assert catalog.get("m").deployments[0].upstream_model == "literal-${NOT_A_VAR}"


def test_unset_variable_names_file_model_and_field(tmp_path: Path) -> None:
    text = VALID.replace("${TEST_UPSTREAM:-http://127.0.0.1:9}", "${SURELY_UNSET_VARIABLE_42}")
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "'chat-small'" in message
    assert "deployments[0].base_url" in message
    assert "SURELY_UNSET_VARIABLE_42" in message


def test_models_in_file_order() -> None:
    document = {"models": [_model("b"), _model("a")]}
    assert [group.name for group in Catalog.from_mapping(document).models()] == ["b", "a"]


def test_get_unknown_model() -> None:
    catalog = Catalog.from_mapping(_document())
    with pytest.raises(ModelNotFoundError) as caught:
        catalog.get("nope")
    assert caught.value.name == "nope"


def test_demo_catalog_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMULATOR_URL", raising=False)
    catalog = Catalog.load(DEMO)

    mini = catalog.get("gpt-4o-mini")
    assert mini.attributes["tier"] == "standard"
    assert [d.id for d in mini.deployments] == ["gpt-4o-mini/primary", "gpt-4o-mini/backup"]
    assert mini.deployments[0].base_url == "http://127.0.0.1:8090/primary/v1"
    assert mini.deployments[1].base_url == "http://127.0.0.1:8090/backup/v1"
    assert mini.deployments[0].price.input_per_mtok == 0.15

    haiku = catalog.get("claude-3-5-haiku")
    assert haiku.attributes["tier"] == "standard"
    assert haiku.deployments[0].provider == "anthropic"

    assert catalog.get("gpt-4o").attributes["tier"] == "premium"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"provider": "palm"}, "deployments[0].provider", "must be one of"),
        ({"base_url": "ftp://x"}, "deployments[0].base_url", "http://"),
        ({"timeout_s": 0}, "deployments[0].timeout_s", "greater than 0"),
        ({"timeout_s": "soon"}, "deployments[0].timeout_s", "must be a number"),
        ({"priority": 1.5}, "deployments[0].priority", "integer"),
        ({"api_key_env": "not a name"}, "deployments[0].api_key_env", "variable name"),
        ({"upstream_model": None}, "deployments[0].upstream_model", "missing"),
        ({"colour": "blue"}, "deployments[0]", "unknown keys ['colour']"),
        (
            {"price": {"input_per_mtok": 1, "output_per_mtok": 1}},
            "deployments[0].price.cached_input_per_mtok",
            "missing",
        ),
        (
            {"price": {"input_per_mtok": -1, "output_per_mtok": 1, "cached_input_per_mtok": 0}},
            "deployments[0].price.input_per_mtok",
            "0 or more",
        ),
    ],
)
def test_invalid_deployment_field(change: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        Catalog.from_mapping(_document(**change), source="test.yaml")
    message = str(caught.value)
    assert message.startswith("test.yaml: model 'm': ")
    assert field in message
    assert problem in message


def test_missing_price_everywhere() -> None:
    model = _model("m")
    del model["deployments"][0]["price"]
    with pytest.raises(CatalogError, match=r"deployments\[0\]\.price: is missing"):
        Catalog.from_mapping({"models": [model]})


def test_unknown_strategy() -> None:
    model = {**_model("m"), "strategy": "random"}
    with pytest.raises(CatalogError, match="strategy: must be one of"):
        Catalog.from_mapping({"models": [model]})


def test_duplicate_model_name() -> None:
    with pytest.raises(CatalogError, match="model 'm': name: is defined twice"):
        Catalog.from_mapping({"models": [_model("m"), _model("m")]})


def test_duplicate_deployment_id() -> None:
    model = _model("m")
    model["deployments"].append(dict(model["deployments"][0]))
    with pytest.raises(CatalogError, match="id 'm/primary' is used twice"):
        Catalog.from_mapping({"models": [model]})


def test_empty_deployments() -> None:
    with pytest.raises(CatalogError, match="deployments: must be a non-empty list"):
        Catalog.from_mapping({"models": [{"name": "m", "deployments": []}]})


@pytest.mark.parametrize("document", [None, [], {"models": []}, {"models": "x"}])
def test_invalid_top_level(document: Any) -> None:
    with pytest.raises(CatalogError):
        Catalog.from_mapping(document)


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [unclosed")
    with pytest.raises(CatalogError, match="invalid YAML") as caught:
        Catalog.load(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        Catalog.load(tmp_path / "absent.yaml")


def _model(name: str, **change: Any) -> dict[str, Any]:
    deployment = {
        "name": "primary",
        "provider": "openai",
        "upstream_model": "up",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "KEY",
        "price": {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": 0.5},
    }
    deployment.update(change)
    return {"name": name, "deployments": [deployment]}


def _document(**change: Any) -> dict[str, Any]:
    return {"models": [_model("m", **change)]}
