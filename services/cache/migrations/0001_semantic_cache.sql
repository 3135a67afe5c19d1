-- Semantic cache entries: one cached response per prompt, matched by embedding within one
-- tenant, model and context (everything in the request but the last user message).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS semantic_cache_entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text        NOT NULL,
    model        text        NOT NULL,
    context_hash text        NOT NULL,
    prompt       text        NOT NULL,
    embedding    vector(384) NOT NULL,  -- all-MiniLM-L6-v2, unit length
    response     bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- Approximate nearest neighbours by cosine distance; m and ef_construction are pgvector's defaults.
CREATE INDEX IF NOT EXISTS semantic_cache_entries_embedding_idx
    ON semantic_cache_entries USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Exact lookups of one scope, which the planner prefers when a scope holds few rows.
CREATE INDEX IF NOT EXISTS semantic_cache_entries_scope_idx
    ON semantic_cache_entries (tenant, model, context_hash, expires_at);

CREATE INDEX IF NOT EXISTS semantic_cache_entries_expires_at_idx
    ON semantic_cache_entries (expires_at);
