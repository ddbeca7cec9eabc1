-- Affiliates who refer leads, and the commissions a won deal earns.
--
-- Money: integer minor units. Rates: integer basis points (1 bp = 0.01 %). A commission is
-- base_minor × rate_bps / 10000 summed over the rule's tiers (marginal, like tax brackets),
-- computed exactly and rounded half away from zero once per commission line
-- (api::repo::commissions::commission_for).

CREATE TABLE affiliates (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    display_name      text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    -- The affiliate's own login, once they have one.
    user_id           uuid,
    contact_id        uuid,
    -- applied → approved → onboarding → active ⇄ suspended; applied → rejected.
    status            text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'approved', 'rejected',
                                                                          'onboarding', 'active', 'suspended')),
    referral_code     text NOT NULL CHECK (referral_code ~ '^[A-Z0-9]{4,16}$'),
    -- [{"step": "contract", "done_at": null | timestamp}, ...]: all done before active.
    onboarding        jsonb NOT NULL DEFAULT '[{"step": "contract", "done_at": null}, {"step": "training", "done_at": null}, {"step": "payout_details", "done_at": null}]'
                          CHECK (jsonb_typeof(onboarding) = 'array'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, referral_code),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE SET NULL (user_id),
    FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id)
);
CREATE INDEX affiliates_recent ON affiliates (tenant_id, created_at DESC, id DESC);

-- Attribution: a lead or deal an affiliate brought.
ALTER TABLE leads ADD COLUMN affiliate_id uuid;
ALTER TABLE leads ADD CONSTRAINT leads_affiliate_fkey FOREIGN KEY (tenant_id, affiliate_id)
    REFERENCES affiliates (tenant_id, id) ON DELETE SET NULL (affiliate_id);
CREATE INDEX leads_affiliate ON leads (tenant_id, affiliate_id) WHERE affiliate_id IS NOT NULL;
ALTER TABLE deals ADD COLUMN affiliate_id uuid;
ALTER TABLE deals ADD CONSTRAINT deals_affiliate_fkey FOREIGN KEY (tenant_id, affiliate_id)
    REFERENCES affiliates (tenant_id, id) ON DELETE SET NULL (affiliate_id);

-- How commissions are earned. `beneficiary`: the deal's affiliate, or the deal's owner (rep).
-- `affiliate_id` narrows an affiliate rule to one affiliate. Tiers are marginal:
-- [{"from_minor": 0, "rate_bps": 500}, {"from_minor": 10000000, "rate_bps": 700}] pays 5 % on the
-- first 100,000.00 and 7 % above. The most specific active rule per beneficiary and currency
-- applies (a rule for the affiliate over a rule for all affiliates).
CREATE TABLE commission_rules (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    beneficiary   text NOT NULL CHECK (beneficiary IN ('affiliate', 'owner')),
    affiliate_id  uuid,
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    tiers         jsonb NOT NULL CHECK (jsonb_typeof(tiers) = 'array' AND jsonb_array_length(tiers) BETWEEN 1 AND 20),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK (affiliate_id IS NULL OR beneficiary = 'affiliate'),
    FOREIGN KEY (tenant_id, affiliate_id) REFERENCES affiliates (tenant_id, id) ON DELETE CASCADE
);

-- What a won deal earned, one line per beneficiary. Computed once per deal (the UNIQUE keys).
CREATE TABLE commissions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    deal_id       uuid NOT NULL,
    rule_id       uuid NOT NULL,
    affiliate_id  uuid,
    user_id       uuid,
    base_minor    bigint NOT NULL CHECK (base_minor >= 0),
    amount_minor  bigint NOT NULL CHECK (amount_minor >= 0),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The month the deal was won in (first day): payouts group by it.
    period        date NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'paid')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    CHECK ((affiliate_id IS NULL) <> (user_id IS NULL)),
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, rule_id) REFERENCES commission_rules (tenant_id, id),
    FOREIGN KEY (tenant_id, affiliate_id) REFERENCES affiliates (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX commissions_once_per_affiliate ON commissions (tenant_id, deal_id, affiliate_id)
    WHERE affiliate_id IS NOT NULL;
CREATE UNIQUE INDEX commissions_once_per_user ON commissions (tenant_id, deal_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX commissions_period ON commissions (tenant_id, period);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['affiliates', 'commission_rules', 'commissions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = wasit_current_tenant()) '
                       'WITH CHECK (tenant_id = wasit_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO wasit_app', t);
    END LOOP;
END
$$;
