-- Deals on a per-tenant pipeline. Money is an integer count of the currency's minor units (halalas
-- for SAR) with an ISO 4217 code beside it: never a float.

CREATE TABLE pipeline_stages (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    position     integer NOT NULL CHECK (position >= 0),
    -- Percent chance that a deal in this stage is won: the weight of the forecast.
    probability  smallint NOT NULL CHECK (probability BETWEEN 0 AND 100),
    -- 'won' and 'lost' stages close a deal; a closed deal does not move again.
    kind         text NOT NULL DEFAULT 'open' CHECK (kind IN ('open', 'won', 'lost')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, position),
    UNIQUE (tenant_id, name),
    CHECK ((kind = 'won') = (probability = 100) OR kind = 'open'),
    CHECK (kind <> 'lost' OR probability = 0)
);

CREATE TABLE deals (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title                text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    lead_id              uuid,
    contact_id           uuid,
    stage_id             uuid NOT NULL,
    amount_minor         bigint NOT NULL CHECK (amount_minor >= 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    expected_close_date  date,
    owner_user_id        uuid,
    closed_at            timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, stage_id) REFERENCES pipeline_stages (tenant_id, id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE SET NULL (lead_id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    FOREIGN KEY (tenant_id, owner_user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (owner_user_id)
);
CREATE INDEX deals_recent ON deals (tenant_id, created_at DESC, id DESC);
CREATE INDEX deals_stage ON deals (tenant_id, stage_id);
CREATE INDEX deals_close ON deals (tenant_id, expected_close_date);

-- Every stage a deal entered, with who moved it.
CREATE TABLE deal_stage_history (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL,
    deal_id        uuid NOT NULL,
    from_stage_id  uuid,
    to_stage_id    uuid NOT NULL,
    actor_user_id  uuid,
    actor_role     text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deal_stage_history_deal ON deal_stage_history (tenant_id, deal_id, at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['pipeline_stages', 'deals', 'deal_stage_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline_stages, deals TO wasit_app;
GRANT SELECT, INSERT ON deal_stage_history TO wasit_app;

-- A new tenant starts with a working pipeline. Runs in the creating transaction, whose
-- app.tenant_id is the new tenant (runtime::db::begin_tenant), so row-level security applies.
CREATE FUNCTION wasit_default_pipeline() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pipeline_stages (tenant_id, name, position, probability, kind) VALUES
        (NEW.id, 'qualification', 0, 10, 'open'),
        (NEW.id, 'proposal', 1, 40, 'open'),
        (NEW.id, 'negotiation', 2, 70, 'open'),
        (NEW.id, 'won', 3, 100, 'won'),
        (NEW.id, 'lost', 4, 0, 'lost');
    RETURN NEW;
END
$$;
CREATE TRIGGER tenants_default_pipeline AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION wasit_default_pipeline();

-- Tenants that exist already get the same pipeline.
DO $$
DECLARE
    t uuid;
BEGIN
    FOR t IN SELECT id FROM tenants LOOP
        PERFORM set_config('app.tenant_id', t::text, true);
        INSERT INTO pipeline_stages (tenant_id, name, position, probability, kind) VALUES
            (t, 'qualification', 0, 10, 'open'),
            (t, 'proposal', 1, 40, 'open'),
            (t, 'negotiation', 2, 70, 'open'),
            (t, 'won', 3, 100, 'won'),
            (t, 'lost', 4, 0, 'lost');
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END
$$;
