"""Screening of OpenAI chat requests inside Envoy's ext_authz call.

Envoy sends the request body with the Check call (up to its `with_request_body` limit).
When the body is whole, names a model of the catalog and its prompt passes the policy
and injection checks with nothing to redact, the check returns the
:data:`~libs.screening.SCREENED_HEADER` digest, and the router does not call
ScreenPrompt. Every other request (PII to redact, a denial, a cut body, another API
surface) gets no digest and is screened by the router as before, so the errors and the
audit events of those requests do not change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from libs.config import ConfigError
from libs.errors import InvalidRequestError
from libs.openai_chat import parse_body, validate
from libs.principal import Principal
from libs.screening import prompt_roles_and_texts, screened_digest
from services.security import metrics

logger = logging.getLogger(__name__)

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
# Seconds without edge screening after it failed, for example on a policy engine timeout.
FAILURE_PAUSE_S = 5.0
# Envoy sets this request header on the Check call when the body was cut at the limit.
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"

ScreenClean = Callable[[str, Principal, str, Mapping[str, str], list[tuple[str, str]]], Awaitable[bool]]
"""Screens a prompt and returns True when it may go to the provider unchanged (audited as allowed)."""


def load_model_attributes(path: str | Path) -> dict[str, dict[str, str]]:
    """Return each model group's name with its attributes, read from the router's catalog.

    Only plain string attributes are read. A group whose attributes use `${VAR}` is left
    out: the router expands those, and its digest would differ anyway.
    """
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"SECURITY_CATALOG={path}: cannot read the model catalog ({exc})") from None
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"SECURITY_CATALOG={path}: the model catalog needs a `models` list")
    models: dict[str, dict[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        raw = entry.get("attributes") or {}
        if not isinstance(raw, dict):
            continue
        # Only string values, as the router's catalog allows; anything else leaves the model out.
        attributes = {str(key): value for key, value in raw.items() if isinstance(value, str)}
        if len(attributes) != len(raw) or any("${" in value for value in attributes.values()):
            continue
        models[entry["name"]] = attributes
    return models


class EdgeScreener:
    """Screens chat requests whose whole body came with the ext_authz call."""

    def __init__(self, model_attributes: Mapping[str, Mapping[str, str]], screen_clean: ScreenClean) -> None:
        self.model_attributes = model_attributes
        self.screen_clean = screen_clean
        self._paused_until = 0.0

    async def digest(self, http: Any, request_id: str, principal: Principal) -> str | None:
        """Screen the Check call's HTTP request and return its digest, or None to leave it to the router."""
        if http.method != "POST" or http.path.split("?", 1)[0] != CHAT_COMPLETIONS_PATH:
            return None
        if http.headers.get(PARTIAL_BODY_HEADER, "").lower() == "true":
            return None
        if time.monotonic() < self._paused_until:
            return None

        try:
            # An invalid request gets its error from the router, and no audit event here.
            request = parse_body(http.raw_body or http.body.encode())
            validate(request)
        except InvalidRequestError:
            return None
        model = request["model"]
        attributes = self.model_attributes.get(model)
        if attributes is None:
            return None

        texts = prompt_roles_and_texts(request)
        try:
            clean = await self.screen_clean(request_id, principal, model, attributes, texts)
        except Exception as exc:
            # The router screens the request again and reports the failure in the API's
            # shape. Pausing keeps a slow policy engine from costing every request twice.
            self._paused_until = time.monotonic() + FAILURE_PAUSE_S
            metrics.EDGE_SCREENING_FAILURES.inc()
            logger.warning(
                "edge screening failed; the router screens requests for a while",
                extra={"error": type(exc).__name__, "pause_s": FAILURE_PAUSE_S},
            )
            return None
        return screened_digest(model, attributes, texts) if clean else None
