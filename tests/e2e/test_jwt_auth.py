"""JSON Web Tokens through the edge with the official OpenAI SDK: accepted, metered under
their subject, held to the model policy of their roles, and rejected with a reason."""

from __future__ import annotations

import time
import uuid
from typing import Any

import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _client(gateway: Any, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=token, max_retries=0, timeout=30)


async def test_token_is_accepted_and_metered_under_its_subject(gateway: Any) -> None:
    tenant = f"jwt-{uuid.uuid4().hex[:8]}"
    client = _client(gateway, gateway.token(tenant=tenant, sub="ana-ortiz", roles=["user"]))

    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"Name a river. {tenant}"}]
    )
    rows = await gateway.ledger_rows(tenant)

    assert completion.choices[0].message.content
    assert [(row["key_id"], row["outcome"]) for row in rows] == [("jwt:ana-ortiz", "ok")]


def test_roles_in_the_token_decide_the_models(gateway: Any) -> None:
    user = _client(gateway, gateway.token(tenant="jwt-roles", roles=["user"]))
    premium = _client(gateway, gateway.token(tenant="jwt-roles", roles=["premium"]))
    messages = [{"role": "user", "content": "Name a colour."}]

    with pytest.raises(openai.PermissionDeniedError) as denied:
        user.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    answer = premium.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]

    assert denied.value.code == "model_not_allowed"
    assert answer.choices[0].message.content


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 600}, "the token has expired"),
        ({"aud": "someone-else"}, "audience is not 'ai-gateway'"),
        ({"tenant": None}, "`tenant` claim must be a tenant id"),
    ],
)
def test_rejected_token_gets_401_reason(gateway: Any, claims: dict[str, Any], reason: str) -> None:
    token = gateway.token(**{"tenant": "jwt-rejected", **claims})

    with pytest.raises(openai.AuthenticationError) as rejected:
        _client(gateway, token).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )

    assert rejected.value.code == "invalid_token"
    assert reason in rejected.value.message
    assert token not in str(rejected.value.body)
