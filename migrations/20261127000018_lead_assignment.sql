-- What leads a rep takes: sectors and territories (empty: any), and whether they take new leads
-- at all. A rep without a profile takes any lead. Assignment picks, among the reps who match, the
-- one with the fewest open leads (api::repo::leads::assign).

CREATE TABLE rep_profiles (
    tenant_id      uuid NOT NULL,
    user_id        uuid NOT NULL,
    sectors        text[] NOT NULL DEFAULT '{}',
    territories    text[] NOT NULL DEFAULT '{}',
    accepts_leads  boolean NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE rep_profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE rep_profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rep_profiles USING (tenant_id = wasit_current_tenant())
    WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON rep_profiles TO wasit_app;

-- Open leads per owner: the load assignment balances.
CREATE INDEX leads_owner_open ON leads (tenant_id, owner_user_id)
    WHERE status IN ('new', 'contacted', 'qualified');
