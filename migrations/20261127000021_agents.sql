-- The eighteen agents: routing and handoff state on the conversation, the actions agents take on
-- the CRM (each applied once per idempotency key), approvals for money-moving actions, and the
-- prompt versions audited turns refer to.

-- A new conversation starts with the intake agent (the router moves it on from there).
ALTER TABLE conversations
    ALTER COLUMN active_agent SET DEFAULT 'intake',
    -- Set by a handoff: the agent that handed over and why. The next agent takes a turn even
    -- without a new message, and clears it.
    ADD COLUMN handoff_from text,
    ADD COLUMN handoff_reason text CHECK (length(handoff_reason) <= 2000),
    -- Handoffs since the contact last wrote: bounds a chain of agents passing the conversation on.
    ADD COLUMN handoff_hops smallint NOT NULL DEFAULT 0 CHECK (handoff_hops >= 0),
    -- Turns in a row that changed nothing (no action, no handoff): an escalation rule.
    ADD COLUMN turns_without_progress integer NOT NULL DEFAULT 0 CHECK (turns_without_progress >= 0),
    -- The agent that escalated: the conversation goes back to it when a rep hands it back.
    ADD COLUMN escalated_from text;

-- Every action an agent took on the CRM, keyed by (conversation, turn, tool call): a turn that
-- runs again applies nothing twice.
CREATE TABLE agent_actions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    turn_seq         bigint NOT NULL,
    call_index       integer NOT NULL CHECK (call_index >= 0),
    idempotency_key  text NOT NULL,
    agent            text NOT NULL,
    tool             text NOT NULL,
    arguments        jsonb NOT NULL,
    result           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_actions_conversation ON agent_actions (tenant_id, conversation_id, turn_seq);

-- Money-moving actions an agent asked for, waiting for a person: refunds, guarantee payouts,
-- commission changes over the tenant's threshold, discounts beyond the rep's limit.
CREATE TABLE approvals (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('refund', 'guarantee_payout',
                            'commission_change', 'discount')),
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    conversation_id     uuid,
    agent               text NOT NULL,
    -- The action as the agent asked for it, and a sentence for the approver.
    tool                text NOT NULL,
    arguments           jsonb NOT NULL,
    summary             text NOT NULL CHECK (length(summary) BETWEEN 1 AND 2000),
    -- What it is about (a guarantee claim, a commission, a deal).
    subject_type        text NOT NULL CHECK (subject_type IN ('guarantee_claim', 'commission', 'deal')),
    subject_id          uuid NOT NULL,
    amount_minor        bigint CHECK (amount_minor >= 0),
    currency            text CHECK (currency ~ '^[A-Z]{3}$'),
    requested_at        timestamptz NOT NULL DEFAULT now(),
    decided_by_user_id  uuid,
    decided_at          timestamptz,
    decision_note       text CHECK (length(decision_note) <= 2000),
    CHECK ((status = 'pending') = (decided_by_user_id IS NULL AND decided_at IS NULL)),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE SET NULL (conversation_id),
    FOREIGN KEY (tenant_id, decided_by_user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX approvals_pending ON approvals (tenant_id, requested_at) WHERE status = 'pending';

-- Each prompt version (the SHA-256 of the file's bytes) a tenant's turns used, recorded once;
-- ai_conversations.prompt_version refers to it.
CREATE TABLE prompt_versions (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version        text NOT NULL CHECK (version ~ '^[0-9a-f]{64}$'),
    agent          text NOT NULL,
    -- The file it was read from, relative to the prompts directory, and its bytes.
    path           text NOT NULL,
    body           text NOT NULL,
    first_used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agent_actions', 'approvals', 'prompt_versions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON agent_actions, approvals TO wasit_app;
GRANT SELECT, INSERT ON prompt_versions TO wasit_app;

-- A handoff the next agent has not answered yet is pending work too: recovery redelivers it.
CREATE INDEX conversations_handoff ON conversations (tenant_id, updated_at) WHERE handoff_from IS NOT NULL;
CREATE OR REPLACE FUNCTION wasit_pending_conversations(p_min_age interval)
    RETURNS TABLE (tenant_id uuid, contact_id uuid, conversation_id uuid, max_seq bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT c.tenant_id, c.contact_id, c.id, max(m.seq)
        FROM messages m JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
        WHERE m.direction = 'inbound' AND m.processed_at IS NULL
        GROUP BY c.tenant_id, c.contact_id, c.id
        HAVING min(m.created_at) <= now() - p_min_age
        UNION
        SELECT c.tenant_id, c.contact_id, c.id,
               (SELECT coalesce(max(m.seq), 0) FROM messages m
                 WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id)
        FROM conversations c
        WHERE c.handoff_from IS NOT NULL AND c.updated_at <= now() - p_min_age
          AND c.owner_user_id IS NULL AND c.status = 'open'
    $$;
