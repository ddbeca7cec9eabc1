-- The gold guarantee: a customer's claim, its evidence (metadata of the files), the review, and
-- the refund. submitted → under_review → approved | rejected; approved → refunded. Every refund
-- rests on an approval recorded with the user who gave it (the CHECKs below hold it even against
-- a bug in the API).

CREATE TABLE guarantee_claims (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_id             uuid,
    deal_id                uuid,
    description            text NOT NULL CHECK (length(description) BETWEEN 1 AND 5000),
    claimed_minor          bigint NOT NULL CHECK (claimed_minor >= 0),
    currency               text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                 text NOT NULL DEFAULT 'submitted'
                               CHECK (status IN ('submitted', 'under_review', 'approved', 'rejected', 'refunded')),
    -- [{"file_name", "content_type", "size_bytes", "sha256", "added_at"}]
    evidence               jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(evidence) = 'array'),
    decision_note          text CHECK (length(decision_note) <= 2000),
    approved_minor         bigint CHECK (approved_minor >= 0),
    approved_by_user_id    uuid,
    approved_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK (status NOT IN ('approved', 'refunded')
           OR (approved_by_user_id IS NOT NULL AND approved_at IS NOT NULL AND approved_minor IS NOT NULL)),
    CHECK (approved_minor IS NULL OR approved_minor <= claimed_minor),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE SET NULL (deal_id),
    FOREIGN KEY (tenant_id, approved_by_user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX guarantee_claims_recent ON guarantee_claims (tenant_id, created_at DESC, id DESC);
CREATE INDEX guarantee_claims_status ON guarantee_claims (tenant_id, status, created_at DESC);

-- One refund per claim, never more than was approved, with who approved and who paid it out.
CREATE TABLE guarantee_refunds (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL,
    claim_id             uuid NOT NULL,
    amount_minor         bigint NOT NULL CHECK (amount_minor > 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    approved_by_user_id  uuid NOT NULL,
    refunded_by_user_id  uuid NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, claim_id),
    FOREIGN KEY (tenant_id, claim_id) REFERENCES guarantee_claims (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, approved_by_user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, refunded_by_user_id) REFERENCES users (tenant_id, id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['guarantee_claims', 'guarantee_refunds'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON guarantee_claims TO wasit_app;
GRANT SELECT, INSERT ON guarantee_refunds TO wasit_app;
