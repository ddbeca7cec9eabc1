-- Commission on deal won: when a deal is won, its commission lines are computed by rule in the same
-- transaction (api::repo::commissions::on_deal_won), and an event asks the commission agent to
-- review them: a line up to its rule's approval threshold is approved; a larger one waits for a
-- manager (`approvals`, kind `commission_change`). A rule without a threshold approves nothing on
-- its own: every line waits for a person.
ALTER TABLE commission_rules
    ADD COLUMN approval_threshold_minor bigint CHECK (approval_threshold_minor >= 0);

ALTER TABLE agent_events DROP CONSTRAINT agent_events_agent_check,
    ADD CONSTRAINT agent_events_agent_check
        CHECK (agent IN ('scorer', 'router', 'deal_coach', 'forecaster', 'commission'));
ALTER TABLE agent_events DROP CONSTRAINT agent_events_kind_check,
    ADD CONSTRAINT agent_events_kind_check
        CHECK (kind IN ('lead_updated', 'lead_qualified', 'lead_score_crossed', 'deal_stage_changed',
                        'forecast_due', 'deal_won'));

-- A deal moved to an open stage asks the deal coach; a deal won asks the commission agent (its
-- lines are computed in the same transaction, after this trigger); a deal lost asks nobody.
CREATE OR REPLACE FUNCTION wasit_deal_events() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_stage pipeline_stages%ROWTYPE;
BEGIN
    IF NEW.stage_id IS NOT DISTINCT FROM OLD.stage_id THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_stage FROM pipeline_stages WHERE tenant_id = NEW.tenant_id AND id = NEW.stage_id;
    IF v_stage.kind = 'open' THEN
        INSERT INTO agent_events (tenant_id, agent, kind, lead_id, deal_id, detail, dedupe_key)
        VALUES (NEW.tenant_id, 'deal_coach', 'deal_stage_changed', NEW.lead_id, NEW.id,
                jsonb_build_object('title', NEW.title, 'amount_minor', NEW.amount_minor,
                    'currency', NEW.currency, 'expected_close_date', NEW.expected_close_date,
                    'from_stage', (SELECT name FROM pipeline_stages WHERE tenant_id = NEW.tenant_id AND id = OLD.stage_id),
                    'to_stage', v_stage.name, 'to_stage_kind', v_stage.kind,
                    'stage_probability', v_stage.probability),
                'deal_coach:' || NEW.id || ':' || txid_current())
        ON CONFLICT (tenant_id, dedupe_key) DO UPDATE SET detail = EXCLUDED.detail;
    ELSIF v_stage.kind = 'won' THEN
        INSERT INTO agent_events (tenant_id, agent, kind, lead_id, deal_id, detail, dedupe_key)
        VALUES (NEW.tenant_id, 'commission', 'deal_won', NEW.lead_id, NEW.id,
                jsonb_build_object('title', NEW.title, 'amount_minor', NEW.amount_minor,
                    'currency', NEW.currency, 'affiliate_id', NEW.affiliate_id,
                    'owner_user_id', NEW.owner_user_id),
                'commission:' || NEW.id)
        ON CONFLICT (tenant_id, dedupe_key) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
