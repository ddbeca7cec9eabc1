-- The first CRM records: leads, and the audit log every later CRM change writes to.
-- Tenancy rules as in the foundation: tenant_id NOT NULL, RLS enabled and forced, indexes and
-- UNIQUE constraints leading with tenant_id, foreign keys that include tenant_id (so a row can only
-- ever point at its own tenant's rows).

CREATE TABLE leads (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_id           uuid,
    source               text NOT NULL CHECK (source IN ('whatsapp', 'sms', 'email', 'web', 'referral',
                                                         'import', 'manual')),
    -- new → contacted → qualified → converted, or disqualified from any open state; enforced by
    -- the API (api::routes::leads), kept honest here by the set of values.
    status               text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'contacted', 'qualified',
                                                                       'converted', 'disqualified')),
    score                smallint CHECK (score BETWEEN 0 AND 100),
    -- Why the score is what it is: [{"reason": "...", "points": n}, ...].
    score_reasons        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(score_reasons) = 'array'),
    -- Answers gathered while qualifying (budget, timeline, product interest, ...).
    qualification        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(qualification) = 'object'),
    sector               text CHECK (length(sector) BETWEEN 1 AND 100),
    territory            text CHECK (length(territory) BETWEEN 1 AND 100),
    owner_user_id        uuid,
    disqualified_reason  text CHECK (length(disqualified_reason) <= 1000),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (tenant_id, owner_user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (owner_user_id)
);
-- Lists: newest first, filtered by status and owner.
CREATE INDEX leads_recent ON leads (tenant_id, created_at DESC, id DESC);
CREATE INDEX leads_status ON leads (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX leads_owner ON leads (tenant_id, owner_user_id, created_at DESC, id DESC);
CREATE INDEX leads_contact ON leads (tenant_id, contact_id);

-- Who changed what: one row per change made through the API, with the record before and after.
CREATE TABLE audit_log (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The user, when the token's subject is one; the role always.
    actor_user_id  uuid,
    actor_role     text NOT NULL,
    action         text NOT NULL,
    entity         text NOT NULL,
    entity_id      uuid,
    before         jsonb,
    after          jsonb,
    at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE INDEX audit_log_entity ON audit_log (tenant_id, entity, entity_id, at DESC);
CREATE INDEX audit_log_recent ON audit_log (tenant_id, at DESC);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leads', 'audit_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON leads TO wasit_app;
-- The audit log is append-only for the application.
GRANT SELECT, INSERT ON audit_log TO wasit_app;
