"""API keys in a real PostgreSQL: create, verify, cache, revoke and the command line."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from libs.errors import InvalidRequestError, UnavailableError
from libs.pgserver import free_port
from libs.principal import Principal
from services.security import keys_cli
from services.security.apikeys import ApiKeyStore
from services.security.migrations import apply_migrations, migration_files

pytestmark = pytest.mark.integration

KEY_SHAPE = re.compile(r"sk-aigw-[A-Za-z0-9]{8}-[A-Za-z0-9]{40}")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(pg_database: str) -> AsyncIterator[ApiKeyStore]:
    opened = await ApiKeyStore.open(pg_database, cache_ttl_s=30.0)
    yield opened
    await opened.close()


async def test_create_returns_key_once(store: ApiKeyStore, pg_database: str) -> None:
    key, record = await store.create(
        "acme", "ci pipeline", ["user", "premium"], ["small-chat", "large-reasoner"], 12.5
    )
    assert KEY_SHAPE.fullmatch(key)
    assert key.startswith(f"sk-aigw-{record.id}-")
    assert record.tenant == "acme"
    assert record.name == "ci pipeline"
    assert record.roles == ("user", "premium")
    assert record.allowed_models == ("small-chat", "large-reasoner")
    assert record.budget_usd == 12.5
    assert record.revoked_at is None
    assert record.created_at.tzinfo is not None

    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        cursor = await conn.execute("SELECT * FROM security_api_keys")
        rows = await cursor.fetchall()
    assert len(rows) == 1
    assert key not in repr(rows)
    assert record.id in repr(rows)
    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        cursor = await conn.execute("SELECT key_hash FROM security_api_keys")
        stored = await cursor.fetchone()
    assert stored is not None
    assert bytes(stored[0]) == hashlib.sha256(key.encode()).digest()


async def test_verify_returns_principal(store: ApiKeyStore) -> None:
    key, record = await store.create("globex", "batch", ["user"], budget_usd=None)
    principal = await store.verify(key)
    assert principal == Principal(
        tenant="globex", key_id=record.id, roles=("user",), allowed_models=(), budget_usd=None
    )


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "sk-aigw-",
        "Bearer sk-aigw-abcdefgh-0123456789abcdefghijklmnopqrstuvwxyzAB",
        "sk-aigw-abcdefg-0123456789abcdefghijklmnopqrstuvwxyzABCD",
        "sk-aigw-abcdefgh-short",
        "sk-proj-abcdefgh-0123456789abcdefghijklmnopqrstuvwxyzABCD",
        "sk-aigw-ábcdefgh-0123456789abcdefghijklmnopqrstuvwxyzABCD",
    ],
)
async def test_verify_rejects_malformed(store: ApiKeyStore, presented: str) -> None:
    assert await store.verify(presented) is None


async def test_verify_rejects_wrong_secret(store: ApiKeyStore) -> None:
    key, _ = await store.create("acme", "dev", ["user"])
    prefix, secret = key.rsplit("-", 1)
    tampered = f"{prefix}-{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    assert await store.verify(tampered) is None
    assert await store.verify(key) is not None


async def test_revoke_stops_verification(store: ApiKeyStore) -> None:
    key, record = await store.create("acme", "to revoke", ["admin"])
    assert await store.verify(key) is not None
    assert await store.revoke(record.id) is True
    assert await store.verify(key) is None
    assert await store.revoke(record.id) is False
    assert await store.revoke("nosuchid") is False
    [listed] = await store.list("acme")
    assert listed.revoked
    assert listed.revoked_at is not None


async def test_hits_served_from_cache(store: ApiKeyStore, pg_database: str) -> None:
    key, record = await store.create("acme", "cached", ["user"])
    assert await store.verify(key) is not None
    async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as conn:
        await conn.execute("DELETE FROM security_api_keys WHERE id = %s", (record.id,))
    cached = await store.verify(key)
    assert cached is not None
    assert cached.key_id == record.id


async def test_misses_cached_until_ttl(pg_database: str) -> None:
    store = await ApiKeyStore.open(pg_database, cache_ttl_s=0.3)
    try:
        key, record = await store.create("acme", "moved", ["user"])
        async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as conn:
            await conn.execute(
                "UPDATE security_api_keys SET id = 'parkedid' WHERE id = %s", (record.id,)
            )
            assert await store.verify(key) is None
            await conn.execute(
                "UPDATE security_api_keys SET id = %s WHERE id = 'parkedid'", (record.id,)
            )
        assert await store.verify(key) is None
        await asyncio.sleep(0.35)
        assert await store.verify(key) is not None
    finally:
        await store.close()


async def test_concurrent_verifies_agree(store: ApiKeyStore) -> None:
    key, record = await store.create("acme", "burst", ["user"])
    results = await asyncio.gather(*(store.verify(key) for _ in range(50)))
    assert {principal.key_id for principal in results if principal is not None} == {record.id}
    assert all(principal is not None for principal in results)


async def test_list_filters_by_tenant(store: ApiKeyStore) -> None:
    _, first = await store.create("acme", "one", ["user"])
    _, second = await store.create("acme", "two", ["premium"], ["vision-pro"])
    _, other = await store.create("initech", "three", ["admin"], budget_usd=0)
    assert [record.id for record in await store.list("acme")] == [first.id, second.id]
    assert [record.id for record in await store.list("initech")] == [other.id]
    assert {record.id for record in await store.list()} == {first.id, second.id, other.id}
    assert (await store.list("initech"))[0].budget_usd == 0.0


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"tenant": "", "name": "x", "roles": ["user"]}, "INVALID_TENANT"),
        ({"tenant": "acme corp", "name": "x", "roles": ["user"]}, "INVALID_TENANT"),
        ({"tenant": "acme", "name": " ", "roles": ["user"]}, "INVALID_KEY_NAME"),
        ({"tenant": "acme", "name": "x", "roles": []}, "MISSING_ROLE"),
        ({"tenant": "acme", "name": "x", "roles": "user"}, "INVALID_ROLES"),
        ({"tenant": "acme", "name": "x", "roles": ["user,admin"]}, "INVALID_ROLES"),
        ({"tenant": "acme", "name": "x", "roles": ["user"], "allowed_models": [""]},
         "INVALID_ALLOWED_MODELS"),
        ({"tenant": "acme", "name": "x", "roles": ["user"], "budget_usd": -1.0}, "INVALID_BUDGET"),
        ({"tenant": "acme", "name": "x", "roles": ["user"], "budget_usd": float("nan")},
         "INVALID_BUDGET"),
    ],
)
async def test_create_rejects_invalid(
    store: ApiKeyStore, arguments: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await store.create(**arguments)  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert await store.list() == []


async def test_migrations_idempotent(pg_database: str) -> None:
    first = await ApiKeyStore.open(pg_database)
    await first.close()
    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        assert await apply_migrations(conn) == []
        cursor = await conn.execute("SELECT version FROM security_schema_migrations ORDER BY 1")
        versions = [row[0] for row in await cursor.fetchall()]
    assert versions == [version for version, _ in migration_files()]
    assert versions == ["0001_api_keys", "0002_audit_events"]


async def test_open_unreachable_database() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=1"
    with pytest.raises(UnavailableError) as caught:
        await ApiKeyStore.open(url, connect_timeout_s=1.0)
    assert caught.value.reason == "KEY_STORE_UNAVAILABLE"


async def test_verify_after_close_unavailable(pg_database: str) -> None:
    store = await ApiKeyStore.open(pg_database)
    key, _ = await store.create("acme", "closing", ["user"])
    await store.close()
    with pytest.raises(UnavailableError) as caught:
        await store.verify(key)
    assert caught.value.reason == "KEY_STORE_UNAVAILABLE"


async def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await keys_cli.run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_cli_create_list_revoke(pg_database: str) -> None:
    code, out, err = await run_cli(
        "--database-url", pg_database, "create", "--tenant", "acme", "--name", "demo",
        "--roles", "user,premium", "--models", "small-chat,vision-pro", "--budget-usd", "5",
    )
    assert code == 0
    key = out.strip()
    assert KEY_SHAPE.fullmatch(key)
    assert "not shown again" in err
    key_id = key.split("-")[2]

    store = await ApiKeyStore.open(pg_database)
    try:
        principal = await store.verify(key)
    finally:
        await store.close()
    assert principal == Principal("acme", key_id, ("user", "premium"),
                                  ("small-chat", "vision-pro"), 5.0)

    code, out, _ = await run_cli("--database-url", pg_database, "list")
    assert code == 0
    assert key_id in out
    assert "small-chat,vision-pro" in out
    assert key.split("-")[3] not in out

    code, out, _ = await run_cli(
        "--database-url", pg_database, "list", "--tenant", "acme", "--json"
    )
    assert code == 0
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert listed["id"] == key_id
    assert listed["budget_usd"] == 5.0
    assert listed["revoked_at"] is None

    code, out, _ = await run_cli("--database-url", pg_database, "revoke", key_id)
    assert code == 0
    assert out.strip() == f"revoked key {key_id}"
    code, _, err = await run_cli("--database-url", pg_database, "revoke", key_id)
    assert code == 1
    assert "no active key" in err


async def test_cli_reports_invalid_input(pg_database: str) -> None:
    code, out, err = await run_cli(
        "--database-url", pg_database, "create", "--tenant", "acme", "--name", "x",
        "--roles", "user", "--budget-usd", "-3",
    )
    assert code == 1
    assert out == ""
    assert "invalid budget_usd" in err


async def test_cli_requires_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys_cli.DATABASE_URL_VARIABLE, raising=False)
    code, _, err = await run_cli("list")
    assert code == 2
    assert keys_cli.DATABASE_URL_VARIABLE in err


def test_cli_module_reads_env(pg_database: str) -> None:
    env = {**os.environ, keys_cli.DATABASE_URL_VARIABLE: pg_database}
    created = subprocess.run(
        [sys.executable, "-m", "services.security.keys_cli", "create", "--tenant", "umbrella",
         "--name", "env", "--roles", "user"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert created.returncode == 0, created.stderr
    assert KEY_SHAPE.fullmatch(created.stdout.strip())
    listed = subprocess.run(
        [sys.executable, "-m", "services.security.keys_cli", "list", "--tenant", "umbrella"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert created.stdout.strip().split("-")[2] in listed.stdout
    assert created.stdout.strip() not in listed.stdout
