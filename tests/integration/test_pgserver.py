"""The embedded PostgreSQL starts, serves SQL and has pgvector."""

import psycopg
import pytest

pytestmark = pytest.mark.integration


async def test_pgvector_cosine_distance(pg_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_database) as conn:
        row = await (await conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector")).fetchone()
        version = await (await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).fetchone()
    assert row is not None and row[0] == pytest.approx(1.0)
    assert version is not None and version[0].startswith("0.8")
