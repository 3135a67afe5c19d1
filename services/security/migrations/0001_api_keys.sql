-- API keys. Only the SHA-256 digest of a key is stored; the key itself is shown once,
-- when it is created.
CREATE TABLE IF NOT EXISTS security_api_keys (
    id             text PRIMARY KEY,                 -- public id: the 8 characters after "sk-aigw-"
    tenant         text NOT NULL,
    name           text NOT NULL,
    key_hash       bytea NOT NULL UNIQUE,            -- SHA-256 of the whole key
    roles          text[] NOT NULL DEFAULT '{}',
    allowed_models text[] NOT NULL DEFAULT '{}',     -- empty: whatever the roles allow
    budget_usd     numeric(18, 6) NULL CHECK (budget_usd IS NULL OR budget_usd >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz NULL
);

CREATE INDEX IF NOT EXISTS security_api_keys_tenant_idx
    ON security_api_keys (tenant, created_at);
