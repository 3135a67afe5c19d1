"""Provider adapters: each speaks one wire format and returns OpenAI-shaped dicts."""

from __future__ import annotations

from services.router.providers.anthropic_messages import AnthropicAdapter
from services.router.providers.base import ProviderAdapter, ProviderError
from services.router.providers.bedrock import BedrockAdapter
from services.router.providers.cohere import CohereAdapter
from services.router.providers.gemini import GeminiAdapter
from services.router.providers.openai_compatible import (
    AzureOpenAIAdapter,
    MistralAdapter,
    OpenAICompatibleAdapter,
)

__all__ = [
    "AnthropicAdapter",
    "AzureOpenAIAdapter",
    "BedrockAdapter",
    "CohereAdapter",
    "GeminiAdapter",
    "MistralAdapter",
    "OpenAICompatibleAdapter",
    "ProviderAdapter",
    "ProviderError",
    "adapter_for",
]

_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAICompatibleAdapter(),
    "anthropic": AnthropicAdapter(),
    "azure": AzureOpenAIAdapter(),
    "mistral": MistralAdapter(),
    "gemini": GeminiAdapter(),
    "cohere": CohereAdapter(),
    "bedrock": BedrockAdapter(),
}


def adapter_for(provider: str) -> ProviderAdapter:
    """Return the adapter for a catalog ``provider`` value; raises ValueError when unknown."""
    try:
        return _ADAPTERS[provider]
    except KeyError:
        raise ValueError(
            f"unknown provider {provider!r}; known providers: {sorted(_ADAPTERS)}"
        ) from None
