-- One row per settled request. The request id is the idempotency key of Settle.
CREATE TABLE IF NOT EXISTS metering_usage (
    request_id        text PRIMARY KEY,
    tenant            text NOT NULL,
    key_id            text NOT NULL,
    model             text NOT NULL,
    deployment        text NOT NULL,
    provider          text NOT NULL,
    prompt_tokens     integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens     integer NOT NULL CHECK (cached_tokens >= 0),
    reasoning_tokens  integer NOT NULL CHECK (reasoning_tokens >= 0),
    -- US dollars to the nano-dollar, the precision budgets are kept in.
    cost_usd          numeric(20, 9) NOT NULL CHECK (cost_usd >= 0),
    outcome           text NOT NULL,
    stream            boolean NOT NULL,
    start_time        timestamptz NOT NULL,
    latency_ms        double precision NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

-- GetUsage filters by tenant and time range, optionally by key.
CREATE INDEX IF NOT EXISTS metering_usage_tenant_start_idx
    ON metering_usage (tenant, start_time);

-- Budgets sum the spend of one key.
CREATE INDEX IF NOT EXISTS metering_usage_tenant_key_start_idx
    ON metering_usage (tenant, key_id, start_time);
