"""The model catalog: which public model names exist and where each one is served.

The catalog is a YAML file. Each model group has a public name, attributes that the
authorization policy reads (such as its tier), and one or more deployments: an upstream
model at a provider endpoint with its price and timeouts.

String values may refer to environment variables. ``${VAR}`` is an error when VAR is
unset, ``${VAR:-default}`` takes the default when VAR is unset or empty, and ``$${`` is
a literal ``${``.

Example::

    models:
      - name: gpt-4o-mini
        owned_by: openai
        attributes: {tier: standard}
        price: {input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}
        deployments:
          - name: primary
            provider: openai
            upstream_model: gpt-4o-mini
            base_url: ${OPENAI_BASE_URL:-https://api.openai.com/v1}
            api_key_env: OPENAI_API_KEY

``price``, ``timeout_s`` and ``stream_idle_timeout_s`` may be set on the model and are
then inherited by its deployments. A deployment's ``id`` defaults to ``<model>/<name>``.

Some wire formats take extra deployment fields: ``api_version`` (required for
"azure", optional for "gemini"), ``region`` ("bedrock") and ``max_tokens_field``
("openai" and "azure" models that accept only ``max_tokens`` or only
``max_completion_tokens``). ``deploy/catalog/providers.yaml`` lists a deployment at
every supported provider.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "PROVIDERS",
    "STRATEGIES",
    "Catalog",
    "CatalogError",
    "MAX_TOKENS_FIELDS",
    "Deployment",
    "ModelGroup",
    "ModelNotFoundError",
    "Price",
]

PROVIDERS = ("openai", "anthropic", "azure", "mistral", "gemini", "cohere", "bedrock")
"""Wire formats a deployment can speak: "openai" is any OpenAI-compatible API, "azure"
is Azure OpenAI, "gemini" the Gemini API, "cohere" Cohere's Chat v2 and "bedrock" the
Amazon Bedrock Converse API."""

MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
"""Names an OpenAI-compatible deployment may require for the output token limit."""

STRATEGIES = ("priority", "lowest_cost", "lowest_latency", "least_busy", "weighted")
"""Routing strategies a model group can name; services/router/routing.py describes each."""

DEFAULT_TIMEOUT_S = 60.0

_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_MODEL_KEYS = frozenset(
    {
        "name",
        "owned_by",
        "strategy",
        "attributes",
        "deployments",
        "price",
        "timeout_s",
        "stream_idle_timeout_s",
    }
)
_DEPLOYMENT_KEYS = frozenset(
    {
        "id",
        "name",
        "provider",
        "upstream_model",
        "base_url",
        "api_key_env",
        "price",
        "timeout_s",
        "stream_idle_timeout_s",
        "priority",
        "weight",
        "max_tokens_field",
        "api_version",
        "region",
    }
)
_PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")


class CatalogError(Exception):
    """The catalog file is missing, unreadable or invalid; the message names the spot."""


class ModelNotFoundError(LookupError):
    """No model group has the requested name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not in the catalog")
        self.name = name


@dataclass(frozen=True)
class Price:
    """List price of one deployment, in USD per million tokens."""

    input_per_mtok: float
    """Uncached prompt tokens."""
    output_per_mtok: float
    """Completion tokens, reasoning tokens included."""
    cached_input_per_mtok: float
    """Prompt tokens the provider served from its prompt cache."""


@dataclass(frozen=True)
class Deployment:
    """One upstream model at one provider endpoint."""

    id: str
    """Unique across the catalog, for example "gpt-4o-mini/primary"."""
    provider: str
    """Wire format, one of PROVIDERS."""
    upstream_model: str
    """Model name sent to the provider."""
    base_url: str
    """Base URL as the provider's official SDK takes it ("https://api.openai.com/v1",
    "https://api.anthropic.com")."""
    api_key_env: str | None
    """Name of the environment variable that contains the key, read at call time. None
    sends no key."""
    price: Price
    timeout_s: float
    """Per attempt. For streams it bounds the time until the first chunk."""
    priority: int
    """Lower values are tried first."""
    weight: float
    """Relative share for weighted strategies; the priority strategy ignores it."""
    stream_idle_timeout_s: float | None = None
    """Maximum gap between two stream chunks after the first; None means timeout_s."""
    max_tokens_field: str | None = None
    """For "openai" and "azure": the one output limit field the model accepts, one of
    MAX_TOKENS_FIELDS. The client's limit is sent under this name; None sends the
    request's fields as they came."""
    api_version: str | None = None
    """Azure's ``api-version`` query value (required for "azure"), or the Gemini API
    version in the path ("v1beta" when None)."""
    region: str | None = None
    """AWS region for "bedrock" request signing; None reads AWS_REGION at call time."""

    @property
    def idle_timeout_s(self) -> float:
        """The effective maximum gap between stream chunks, in seconds."""
        return self.stream_idle_timeout_s if self.stream_idle_timeout_s else self.timeout_s


@dataclass(frozen=True)
class ModelGroup:
    """A public model name and the deployments that can serve it."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: str
    """Name of the strategy that orders the deployments for each request, one of STRATEGIES."""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Free-form labels for the authorization policy, for example {"tier": "standard"}."""
    owned_by: str = "aigateway"
    """Shown as ``owned_by`` in the models API."""


class Catalog:
    """An immutable set of model groups, looked up by public name."""

    def __init__(self, groups: list[ModelGroup] | tuple[ModelGroup, ...]) -> None:
        self._groups: dict[str, ModelGroup] = {}
        for group in groups:
            if group.name in self._groups:
                raise CatalogError(f"model {group.name!r} is defined twice")
            self._groups[group.name] = group

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Read and validate a catalog file.

        Raises CatalogError naming the file, the model and the field at fault.
        """
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise CatalogError(f"{source}: cannot read the catalog: {error.strerror}") from error
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise CatalogError(f"{source}: invalid YAML: {error}") from error
        return cls.from_mapping(document, source=source)

    @classmethod
    def from_mapping(
        cls,
        document: Any,
        *,
        source: str = "<catalog>",
        environ: Mapping[str, str] | None = None,
    ) -> Catalog:
        """Validate an already parsed catalog document; see :meth:`load`."""
        parser = _Parser(source, os.environ if environ is None else environ)
        return cls(parser.parse(document))

    def get(self, name: str) -> ModelGroup:
        """Return the group named ``name`` or raise ModelNotFoundError."""
        try:
            return self._groups[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def models(self) -> list[ModelGroup]:
        """Return every group in file order."""
        return list(self._groups.values())

    def deployment(self, deployment_id: str) -> Deployment:
        """Return the deployment with this id or raise LookupError."""
        for group in self._groups.values():
            for deployment in group.deployments:
                if deployment.id == deployment_id:
                    return deployment
        raise LookupError(f"deployment {deployment_id!r} is not in the catalog")


class _Parser:
    """Turn a parsed YAML document into model groups, with errors that name the spot."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self._source = source
        self._environ = environ

    def parse(self, document: Any) -> list[ModelGroup]:
        if not isinstance(document, Mapping):
            raise self._error(None, "", "the top level must be a mapping with a 'models' list")
        unknown = set(document) - {"models"}
        if unknown:
            raise self._error(None, "", f"unknown top-level keys {sorted(map(str, unknown))}")
        entries = document.get("models")
        if not isinstance(entries, list) or not entries:
            raise self._error(None, "models", "must be a non-empty list")

        groups: list[ModelGroup] = []
        names: set[str] = set()
        deployment_ids: set[str] = set()
        for index, entry in enumerate(entries):
            group = self._group(entry, index)
            if group.name in names:
                raise self._error(group.name, "name", "is defined twice")
            names.add(group.name)
            for deployment in group.deployments:
                if deployment.id in deployment_ids:
                    raise self._error(
                        group.name, "deployments", f"id {deployment.id!r} is used twice"
                    )
                deployment_ids.add(deployment.id)
            groups.append(group)
        return groups

    def _group(self, entry: Any, index: int) -> ModelGroup:
        if not isinstance(entry, Mapping):
            raise self._error(None, f"models[{index}]", "must be a mapping")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._error(None, f"models[{index}].name", "must be a non-empty string")
        name = self._expand(name, name, "name")
        self._reject_unknown(entry, _MODEL_KEYS, name, "")

        strategy = self._string(entry, "strategy", name, default="priority")
        if strategy not in STRATEGIES:
            raise self._error(
                name, "strategy", f"must be one of {list(STRATEGIES)}, got {strategy!r}"
            )
        owned_by = self._string(entry, "owned_by", name, default="aigateway")

        raw_attributes = entry.get("attributes", {})
        if not isinstance(raw_attributes, Mapping):
            raise self._error(name, "attributes", "must be a mapping of strings")
        attributes: dict[str, str] = {}
        for key, value in raw_attributes.items():
            if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
                raise self._error(name, f"attributes.{key}", "must be a string")
            attributes[key] = self._expand(str(value), name, f"attributes.{key}")

        model_price = self._price(entry["price"], name, "price") if "price" in entry else None
        model_timeout = self._positive(entry, "timeout_s", name, "timeout_s", DEFAULT_TIMEOUT_S)
        model_idle = self._positive(
            entry, "stream_idle_timeout_s", name, "stream_idle_timeout_s", None
        )

        raw_deployments = entry.get("deployments")
        if not isinstance(raw_deployments, list) or not raw_deployments:
            raise self._error(name, "deployments", "must be a non-empty list")
        deployments = tuple(
            self._deployment(raw, name, position, model_price, model_timeout, model_idle)
            for position, raw in enumerate(raw_deployments)
        )
        return ModelGroup(
            name=name,
            deployments=deployments,
            strategy=strategy,
            attributes=MappingProxyType(attributes),
            owned_by=owned_by,
        )

    def _deployment(
        self,
        raw: Any,
        model: str,
        position: int,
        model_price: Price | None,
        model_timeout: float | None,
        model_idle: float | None,
    ) -> Deployment:
        where = f"deployments[{position}]"
        if not isinstance(raw, Mapping):
            raise self._error(model, where, "must be a mapping")
        self._reject_unknown(raw, _DEPLOYMENT_KEYS, model, where + ".")

        provider = self._string(raw, "provider", model, where=where)
        if provider not in PROVIDERS:
            raise self._error(
                model, f"{where}.provider", f"must be one of {list(PROVIDERS)}, got {provider!r}"
            )
        upstream_model = self._string(raw, "upstream_model", model, where=where)
        base_url = self._string(raw, "base_url", model, where=where)
        if not base_url.startswith(("http://", "https://")):
            raise self._error(
                model, f"{where}.base_url", f"must start with http:// or https://, got {base_url!r}"
            )

        api_key_env = raw.get("api_key_env")
        if api_key_env is not None:
            if not isinstance(api_key_env, str):
                raise self._error(model, f"{where}.api_key_env", "must be a string or null")
            api_key_env = self._expand(api_key_env, model, f"{where}.api_key_env")
            if not _ENV_NAME.fullmatch(api_key_env):
                raise self._error(
                    model,
                    f"{where}.api_key_env",
                    f"must be an environment variable name, got {api_key_env!r}",
                )

        if "price" in raw:
            price = self._price(raw["price"], model, f"{where}.price")
        elif model_price is not None:
            price = model_price
        else:
            raise self._error(model, f"{where}.price", "is missing (set it here or on the model)")

        name = self._string(raw, "name", model, where=where, default=str(position))
        deployment_id = self._string(raw, "id", model, where=where, default=f"{model}/{name}")
        timeout_s = self._positive(raw, "timeout_s", model, f"{where}.timeout_s", model_timeout)
        idle_s = self._positive(
            raw, "stream_idle_timeout_s", model, f"{where}.stream_idle_timeout_s", model_idle
        )

        priority = raw.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise self._error(model, f"{where}.priority", f"must be an integer, got {priority!r}")
        weight = self._positive(raw, "weight", model, f"{where}.weight", 1.0)

        max_tokens_field = self._optional_string(raw, "max_tokens_field", model, where)
        if max_tokens_field is not None and max_tokens_field not in MAX_TOKENS_FIELDS:
            raise self._error(
                model,
                f"{where}.max_tokens_field",
                f"must be one of {list(MAX_TOKENS_FIELDS)}, got {max_tokens_field!r}",
            )
        api_version = self._optional_string(raw, "api_version", model, where)
        if provider == "azure" and api_version is None:
            raise self._error(
                model, f"{where}.api_version", "is missing (Azure OpenAI requires api-version)"
            )
        region = self._optional_string(raw, "region", model, where)
        for key, value, providers in (
            ("max_tokens_field", max_tokens_field, ("openai", "azure")),
            ("api_version", api_version, ("azure", "gemini")),
            ("region", region, ("bedrock",)),
        ):
            if value is not None and provider not in providers:
                raise self._error(
                    model,
                    f"{where}.{key}",
                    f"applies only to {' and '.join(providers)} deployments, not {provider!r}",
                )

        return Deployment(
            id=deployment_id,
            provider=provider,
            upstream_model=upstream_model,
            base_url=base_url.rstrip("/"),
            api_key_env=api_key_env,
            price=price,
            timeout_s=timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S,
            priority=priority,
            weight=weight if weight is not None else 1.0,
            stream_idle_timeout_s=idle_s,
            max_tokens_field=max_tokens_field,
            api_version=api_version,
            region=region,
        )

    def _price(self, raw: Any, model: str, where: str) -> Price:
        if not isinstance(raw, Mapping):
            raise self._error(model, where, "must be a mapping with " + ", ".join(_PRICE_KEYS))
        self._reject_unknown(raw, frozenset(_PRICE_KEYS), model, where + ".")
        values: dict[str, float] = {}
        for key in _PRICE_KEYS:
            value = self._number(raw.get(key), model, f"{where}.{key}")
            if value is None:
                raise self._error(model, f"{where}.{key}", "is missing")
            if value < 0:
                raise self._error(model, f"{where}.{key}", f"must be 0 or more, got {value}")
            values[key] = value
        return Price(**values)

    def _string(
        self,
        raw: Mapping[str, Any],
        key: str,
        model: str,
        *,
        where: str = "",
        default: str | None = None,
    ) -> str:
        field_name = f"{where}.{key}" if where else key
        value = raw.get(key)
        if value is None:
            if default is not None:
                return default
            raise self._error(model, field_name, "is missing")
        if not isinstance(value, str):
            raise self._error(model, field_name, f"must be a string, got {value!r}")
        value = self._expand(value, model, field_name)
        if not value.strip():
            raise self._error(model, field_name, "must not be empty")
        return value

    def _optional_string(
        self, raw: Mapping[str, Any], key: str, model: str, where: str
    ) -> str | None:
        if raw.get(key) is None:
            return None
        return self._string(raw, key, model, where=where)

    def _positive(
        self, raw: Mapping[str, Any], key: str, model: str, field_name: str, default: float | None
    ) -> float | None:
        value = self._number(raw.get(key), model, field_name)
        if value is None:
            return default
        if value <= 0:
            raise self._error(model, field_name, f"must be greater than 0, got {value}")
        return value

    def _number(self, value: Any, model: str, field_name: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            expanded = self._expand(value, model, field_name)
            try:
                return float(expanded)
            except ValueError:
                raise self._error(
                    model, field_name, f"must be a number, got {expanded!r}"
                ) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(model, field_name, f"must be a number, got {value!r}")
        return float(value)

    def _expand(self, value: str, model: str | None, field_name: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            variable, default = match.group(1), match.group(2)
            current = self._environ.get(variable)
            if default is not None:
                return current if current else default
            if current is None:
                raise self._error(model, field_name, f"environment variable {variable} is not set")
            return current

        return _ENV_REFERENCE.sub(replace, value) if "$" in value else value

    def _reject_unknown(
        self, raw: Mapping[str, Any], allowed: frozenset[str], model: str, prefix: str
    ) -> None:
        unknown = sorted(str(key) for key in raw if key not in allowed)
        if unknown:
            raise self._error(
                model,
                prefix.rstrip(".") or "",
                f"unknown keys {unknown}; allowed: {sorted(allowed)}",
            )

    def _error(self, model: str | None, field_name: str, problem: str) -> CatalogError:
        spot = self._source
        if model is not None:
            spot += f": model {model!r}"
        if field_name:
            spot += f": {field_name}"
        return CatalogError(f"{spot}: {problem}")
