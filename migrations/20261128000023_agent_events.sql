-- CRM events for the background agents: a lead changed (scorer), a lead qualified or its score
-- crossed the router's threshold while nobody owns it (router), a deal changed stage (deal_coach).
-- Triggers write the event in the transaction that made the change — a REST call or an agent's
-- action alike — so an event exists exactly when the change committed; the runtime's event
-- dispatcher runs the agent on it. An agent's own change never triggers itself (the scorer's score
-- is not a "lead updated"; the router's assignment is not one either).

CREATE TABLE agent_events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent            text NOT NULL CHECK (agent IN ('scorer', 'router', 'deal_coach')),
    kind             text NOT NULL CHECK (kind IN ('lead_updated', 'lead_qualified',
                         'lead_score_crossed', 'deal_stage_changed')),
    lead_id          uuid,
    deal_id          uuid,
    -- What changed, as the agent reads it.
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- One event per subject and transaction: several changes to a lead in one transaction (an
    -- agent's turn creating and qualifying it) are one event.
    dedupe_key       text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text CHECK (length(last_error) <= 2000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    UNIQUE (tenant_id, dedupe_key),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, deal_id) REFERENCES deals (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_events_due ON agent_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX agent_events_recent ON agent_events (tenant_id, created_at DESC);

ALTER TABLE agent_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON agent_events
    USING (tenant_id = wasit_current_tenant()) WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_events TO wasit_app;

-- A background agent's actions are keyed by (event, call) instead of (conversation, turn, call);
-- its audited turn refers to the event.
ALTER TABLE agent_actions
    ALTER COLUMN conversation_id DROP NOT NULL,
    ALTER COLUMN turn_seq DROP NOT NULL,
    ADD COLUMN event_id uuid,
    ADD CONSTRAINT agent_actions_event_fkey FOREIGN KEY (tenant_id, event_id)
        REFERENCES agent_events (tenant_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT agent_actions_subject CHECK ((conversation_id IS NULL) <> (event_id IS NULL));
ALTER TABLE ai_conversations
    ALTER COLUMN conversation_id DROP NOT NULL,
    ADD COLUMN event_id uuid,
    ADD CONSTRAINT ai_conversations_event_fkey FOREIGN KEY (tenant_id, event_id)
        REFERENCES agent_events (tenant_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT ai_conversations_subject CHECK ((conversation_id IS NULL) <> (event_id IS NULL));
CREATE UNIQUE INDEX ai_conversations_event ON ai_conversations (tenant_id, event_id)
    WHERE event_id IS NOT NULL;

-- A lead's score at or above this, while nobody owns the lead, asks the router to assign it.
CREATE FUNCTION wasit_router_score_threshold() RETURNS smallint
    LANGUAGE sql IMMUTABLE AS $$ SELECT 70::smallint $$;

CREATE FUNCTION wasit_lead_events() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_detail jsonb := jsonb_build_object('status', NEW.status, 'score', NEW.score,
        'qualification', NEW.qualification, 'sector', NEW.sector, 'territory', NEW.territory,
        'source', NEW.source, 'owner_user_id', NEW.owner_user_id);
    v_tx text := txid_current()::text;
BEGIN
    -- What the scorer reads changed (not the score, not the owner: its own and the router's work).
    IF TG_OP = 'INSERT' OR (NEW.status, NEW.qualification, NEW.sector, NEW.territory, NEW.contact_id)
            IS DISTINCT FROM (OLD.status, OLD.qualification, OLD.sector, OLD.territory, OLD.contact_id) THEN
        IF NEW.status NOT IN ('converted', 'disqualified') THEN
            INSERT INTO agent_events (tenant_id, agent, kind, lead_id, detail, dedupe_key)
            VALUES (NEW.tenant_id, 'scorer', 'lead_updated', NEW.id, v_detail,
                    'scorer:' || NEW.id || ':' || v_tx)
            ON CONFLICT (tenant_id, dedupe_key) DO UPDATE SET detail = EXCLUDED.detail;
        END IF;
    END IF;
    -- Nobody owns it, and it just qualified or its score just crossed the threshold.
    IF NEW.owner_user_id IS NULL AND NEW.status NOT IN ('converted', 'disqualified') THEN
        IF NEW.status = 'qualified' AND (TG_OP = 'INSERT' OR OLD.status <> 'qualified') THEN
            INSERT INTO agent_events (tenant_id, agent, kind, lead_id, detail, dedupe_key)
            VALUES (NEW.tenant_id, 'router', 'lead_qualified', NEW.id, v_detail,
                    'router:' || NEW.id || ':' || v_tx)
            ON CONFLICT (tenant_id, dedupe_key) DO NOTHING;
        ELSIF NEW.score >= wasit_router_score_threshold()
              AND (TG_OP = 'INSERT' OR OLD.score IS NULL OR OLD.score < wasit_router_score_threshold()) THEN
            INSERT INTO agent_events (tenant_id, agent, kind, lead_id, detail, dedupe_key)
            VALUES (NEW.tenant_id, 'router', 'lead_score_crossed', NEW.id, v_detail,
                    'router:' || NEW.id || ':' || v_tx)
            ON CONFLICT (tenant_id, dedupe_key) DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER lead_events AFTER INSERT OR UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION wasit_lead_events();

CREATE FUNCTION wasit_deal_events() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stage_id IS DISTINCT FROM OLD.stage_id THEN
        INSERT INTO agent_events (tenant_id, agent, kind, lead_id, deal_id, detail, dedupe_key)
        SELECT NEW.tenant_id, 'deal_coach', 'deal_stage_changed', NEW.lead_id, NEW.id,
               jsonb_build_object('title', NEW.title, 'amount_minor', NEW.amount_minor,
                   'currency', NEW.currency, 'expected_close_date', NEW.expected_close_date,
                   'from_stage', (SELECT name FROM pipeline_stages WHERE tenant_id = NEW.tenant_id AND id = OLD.stage_id),
                   'to_stage', s.name, 'to_stage_kind', s.kind, 'stage_probability', s.probability),
               'deal_coach:' || NEW.id || ':' || txid_current()
        FROM pipeline_stages s WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.stage_id
        ON CONFLICT (tenant_id, dedupe_key) DO UPDATE SET detail = EXCLUDED.detail;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER deal_events AFTER UPDATE OF stage_id ON deals
    FOR EACH ROW EXECUTE FUNCTION wasit_deal_events();

-- The deal coach's notes on a deal: its estimate of the chance to win and the next step.
ALTER TABLE deals
    ADD COLUMN win_probability smallint CHECK (win_probability BETWEEN 0 AND 100),
    ADD COLUMN next_step text CHECK (length(next_step) BETWEEN 1 AND 500);

-- The events due now, across tenants: what the dispatcher runs (as wasit_due_outbox does for the
-- outbox). Oldest first.
CREATE FUNCTION wasit_due_agent_events(p_limit integer) RETURNS TABLE (tenant_id uuid, id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT e.tenant_id, e.id FROM agent_events e
        WHERE e.status = 'pending' AND e.next_attempt_at <= now()
        ORDER BY e.next_attempt_at
        LIMIT p_limit
    $$;
REVOKE ALL ON FUNCTION wasit_due_agent_events(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_due_agent_events(integer) TO wasit_app;

DO $$
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE POLICY owner_routing ON agent_events FOR SELECT TO %I USING (true)', current_user);
END
$$;
