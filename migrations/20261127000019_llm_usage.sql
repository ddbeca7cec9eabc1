-- The LLM layer's durable state: token counts stored on messages (each message is counted once,
-- by the encoding named next to the count), the rolling summary of history trimmed from the
-- model's window, and usage per tenant, day, agent and model for budgets, analytics and metrics.

ALTER TABLE messages
    ADD COLUMN token_count    integer CHECK (token_count >= 0),
    ADD COLUMN token_encoding text CHECK (length(token_encoding) <= 40);

ALTER TABLE conversations
    ADD COLUMN summary             text CHECK (length(summary) <= 8000),
    -- The summary covers every message up to and including this sequence number.
    ADD COLUMN summary_through_seq bigint;

-- Usage per tenant, UTC day, agent and model; turns add to it in their transaction. Each key has
-- up to 16 rows (`shard`, chosen at random per turn) so that a tenant's concurrent turns do not
-- queue on one row lock; readers sum the shards.
CREATE TABLE llm_usage (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day          date NOT NULL,
    agent        text NOT NULL CHECK (length(agent) BETWEEN 1 AND 60),
    model        text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    calls        bigint NOT NULL DEFAULT 0 CHECK (calls >= 0),
    tokens_in    bigint NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out   bigint NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    -- Millionths of a US dollar, from the price table in settings.
    cost_micros  bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    shard        smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15),
    PRIMARY KEY (tenant_id, day, agent, model, shard)
);
ALTER TABLE llm_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE llm_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON llm_usage USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE ON llm_usage TO wasit_app;

-- Notifications sent once per key (a budget reached today tells the admins once, not per turn).
CREATE TABLE notification_once (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
ALTER TABLE notification_once ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_once FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_once USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT ON notification_once TO wasit_app;

-- Tells the tenant's admins, once per key. Runs as the application role: RLS applies.
CREATE FUNCTION wasit_notify_admins_once(p_key text, p_kind text, p_title text, p_body text, p_data jsonb)
    RETURNS integer LANGUAGE sql AS $$
        WITH first AS (
            -- The key is spent only when someone hears: an admin added later is still told.
            INSERT INTO notification_once (tenant_id, key)
            SELECT wasit_current_tenant(), p_key
            WHERE EXISTS (SELECT 1 FROM users
                          WHERE tenant_id = wasit_current_tenant() AND disabled_at IS NULL AND role = 'admin')
            ON CONFLICT DO NOTHING
            RETURNING tenant_id),
        sent AS (
            INSERT INTO notifications (tenant_id, user_id, kind, title, body, data)
            SELECT u.tenant_id, u.id, p_kind, left(p_title, 200), left(p_body, 2000), p_data
            FROM users u JOIN first f ON f.tenant_id = u.tenant_id
            WHERE u.disabled_at IS NULL AND u.role = 'admin'
            RETURNING 1)
        SELECT count(*)::integer FROM sent
    $$;
REVOKE ALL ON FUNCTION wasit_notify_admins_once(text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_notify_admins_once(text, text, text, text, jsonb) TO wasit_app;

-- /metrics reports usage across tenants through the platform role (when it exists).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wasit_platform') THEN
        GRANT SELECT ON llm_usage TO wasit_platform;
    END IF;
END
$$;
