-- Audit trail of security decisions: who, what, the decision and its reason, and what
-- screening found. Never prompt text or PII values, only counts per type.
CREATE TABLE IF NOT EXISTS security_audit_events (
    id                  bigserial PRIMARY KEY,
    occurred_at         timestamptz NOT NULL,
    request_id          text NULL,
    tenant              text NOT NULL,
    key_id              text NOT NULL,
    model               text NULL,
    action              text NOT NULL,
    decision            text NOT NULL CHECK (decision IN ('allowed', 'denied')),
    reason              text NOT NULL,               -- UPPER_SNAKE reason code, '' when allowed
    pii_counts          jsonb NOT NULL DEFAULT '{}', -- entity type -> number redacted
    injection_technique text NULL,
    injection_score     real NULL
);

CREATE INDEX IF NOT EXISTS security_audit_events_tenant_time_idx
    ON security_audit_events (tenant, occurred_at);
