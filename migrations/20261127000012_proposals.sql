-- Proposals: what was offered on a deal. draft → sent → accepted | declined; only a draft's
-- content changes (what was sent is what the customer saw).

CREATE TABLE proposals (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    deal_id       uuid NOT NULL,
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- Markdown, usually Arabic.
    content       text NOT NULL CHECK (length(content) <= 100000),
    amount_minor  bigint CHECK (amount_minor >= 0),
    currency      text CHECK (currency ~ '^[A-Z]{3}$'),
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'sent', 'accepted', 'declined')),
    -- Who wrote it: a user, or an agent (the proposal agent) named here.
    author_user_id uuid,
    author_agent  text,
    sent_at       timestamptz,
    decided_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK ((amount_minor IS NULL) = (currency IS NULL)),
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, author_user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (author_user_id)
);
CREATE INDEX proposals_deal ON proposals (tenant_id, deal_id, created_at DESC);
CREATE INDEX proposals_recent ON proposals (tenant_id, created_at DESC, id DESC);

ALTER TABLE proposals ENABLE ROW LEVEL SECURITY;
ALTER TABLE proposals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON proposals USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON proposals TO wasit_app;
