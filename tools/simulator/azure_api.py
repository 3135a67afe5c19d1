"""Azure OpenAI chat completions endpoint of the simulator.

Azure addresses a model by deployment name in the path and a version in the query:
``POST /openai/deployments/{name}/chat/completions?api-version=...``, with the key in
the ``api-key`` header. Request and response bodies are OpenAI's; a request without
``model`` gets the Azure deployment name as its model.
"""

from __future__ import annotations

from aiohttp import web

from tools.simulator.app import json_response
from tools.simulator.openai_api import error_body, respond

__all__ = ["chat_completions"]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Respond to an Azure deployment's chat completions request."""
    if not request.headers.get("api-key") and not request.headers.get("Authorization"):
        return json_response(
            {
                "error": {
                    "code": "401",
                    "message": "Access denied due to missing subscription key. Make sure to "
                    "include subscription key when making requests to an API.",
                }
            },
            status=401,
        )
    if not request.query.get("api-version"):
        return json_response(
            error_body(
                "Missing required query parameter: api-version",
                "invalid_request_error",
                code="missing_api_version",
            ),
            status=404,
        )
    return await respond(request, model=request.match_info["azure_deployment"])
