-- Disputes over a commission or a gold-guarantee claim: open → under_review → resolved, with a
-- resolution and who resolved it; every change is in the audit log.

CREATE TABLE disputes (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subject_kind         text NOT NULL CHECK (subject_kind IN ('commission', 'guarantee_claim')),
    -- A commission or a claim of this tenant (checked by the API: the key is polymorphic).
    subject_id           uuid NOT NULL,
    reason               text NOT NULL CHECK (length(reason) BETWEEN 1 AND 5000),
    status               text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'under_review', 'resolved')),
    resolution           text CHECK (length(resolution) <= 5000),
    raised_by_user_id    uuid,
    raised_by_role       text NOT NULL,
    resolved_by_user_id  uuid,
    resolved_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK (status <> 'resolved' OR (resolution IS NOT NULL AND resolved_at IS NOT NULL)),
    FOREIGN KEY (tenant_id, raised_by_user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (raised_by_user_id),
    FOREIGN KEY (tenant_id, resolved_by_user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (resolved_by_user_id)
);
CREATE INDEX disputes_recent ON disputes (tenant_id, created_at DESC, id DESC);
CREATE INDEX disputes_subject ON disputes (tenant_id, subject_kind, subject_id);

ALTER TABLE disputes ENABLE ROW LEVEL SECURITY;
ALTER TABLE disputes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON disputes USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE ON disputes TO wasit_app;
