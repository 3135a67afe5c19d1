"""Routes of the provider formats beyond OpenAI's and Anthropic's own paths.

Each format is served at its real path under the deployment prefix ``/{deployment}``,
so a deployment's base URL in a test has the provider's shape. Azure, Gemini, Cohere
and Bedrock are served at the root too. The Mistral path and the catch-all are not,
because at the root they would take the paths of a deployment named "mistral" or of
any deployment.

| path | format |
|---|---|
| ``/openai/deployments/{name}/chat/completions?api-version=`` | Azure OpenAI |
| ``/mistral/v1/chat/completions`` | Mistral |
| ``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` | Gemini |
| ``/v2/chat`` | Cohere Chat v2 |
| ``/model/{modelId}/converse`` and ``/converse-stream`` | Amazon Bedrock Converse |
| ``/{base...}/chat/completions`` | OpenAI, under any base path (``/openai/v1``, ``/api/v1``) |
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_routes"]


def add_routes(app: web.Application, prefix: str) -> None:
    """Register the extra formats' routes under ``prefix``."""
    from tools.simulator import azure_api, bedrock_api, cohere_api, gemini_api, mistral_api, openai_api

    app.router.add_post(
        prefix + "/openai/deployments/{azure_deployment}/chat/completions",
        azure_api.chat_completions,
    )
    # The target segment is "{model}:{method}", split by the handler.
    app.router.add_post(prefix + "/{api_version:v1|v1beta|v1alpha}/models/{target}", gemini_api.models_call)
    app.router.add_post(prefix + "/v2/chat", cohere_api.chat)
    # Model ARNs contain "/" (sent as %2F), so the model id may span segments.
    app.router.add_post(prefix + "/model/{model_id:.+}/converse", bedrock_api.converse)
    app.router.add_post(prefix + "/model/{model_id:.+}/converse-stream", bedrock_api.converse_stream)
    if not prefix:
        return
    app.router.add_post(prefix + "/mistral/v1/chat/completions", mistral_api.chat_completions)
    # Base URLs of OpenAI-compatible providers end in many ways: /openai/v1 (Groq),
    # /inference/v1 (Fireworks), /api/v1 (OpenRouter), /v1/openai (DeepInfra) or
    # nothing (Perplexity). Registered last, so the exact paths above match first.
    app.router.add_post(
        prefix + "/{base_path:(?:[A-Za-z0-9_.-]+/)*}chat/completions",
        openai_api.chat_completions,
    )
