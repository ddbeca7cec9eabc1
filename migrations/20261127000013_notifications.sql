-- In-app notifications for users: what needs a person (an escalated conversation, a dead
-- letter), written in the same transaction as the event, read and marked read through the API.

CREATE TABLE notifications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    kind        text NOT NULL CHECK (length(kind) BETWEEN 1 AND 50),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body        text CHECK (length(body) <= 2000),
    -- What it is about, e.g. {"conversation_id": "..."}.
    data        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notifications_user ON notifications (tenant_id, user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (tenant_id, user_id) WHERE read_at IS NULL;

ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifications USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE ON notifications TO wasit_app;

-- Everyone who works conversations hears when one needs a person. Called inside the transaction
-- that escalates (runtime::turn), as the application role: row-level security applies.
CREATE FUNCTION wasit_notify_escalation(p_conversation uuid, p_reason text) RETURNS integer
    LANGUAGE sql AS $$
        WITH sent AS (
            INSERT INTO notifications (tenant_id, user_id, kind, title, body, data)
            SELECT u.tenant_id, u.id, 'conversation_escalated',
                   'محادثة تحتاج إلى موظف', left(p_reason, 2000),
                   jsonb_build_object('conversation_id', p_conversation)
            FROM users u
            WHERE u.tenant_id = wasit_current_tenant() AND u.disabled_at IS NULL
              AND u.role IN ('admin', 'sales_manager', 'sales_rep')
            RETURNING 1)
        SELECT count(*)::integer FROM sent
    $$;
REVOKE ALL ON FUNCTION wasit_notify_escalation(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_notify_escalation(uuid, text) TO wasit_app;
