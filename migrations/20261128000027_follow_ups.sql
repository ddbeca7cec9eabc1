-- Follow-up timers: `schedule_follow_up` comes back to a contact in some days if they do not
-- write first. One pending timer per conversation (a new one replaces it); the contact writing
-- cancels it (runtime::turn::apply); when it is due, the event dispatcher hands the conversation
-- to the follow-up agent, which writes to the contact in a turn of its own.

CREATE TABLE follow_ups (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    due_at           timestamptz NOT NULL,
    note             text CHECK (length(note) <= 500),
    agent            text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX follow_ups_one_pending ON follow_ups (tenant_id, conversation_id)
    WHERE status = 'pending';
CREATE INDEX follow_ups_due ON follow_ups (due_at) WHERE status = 'pending';

ALTER TABLE follow_ups ENABLE ROW LEVEL SECURITY;
ALTER TABLE follow_ups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON follow_ups
    USING (tenant_id = wasit_current_tenant()) WITH CHECK (tenant_id = wasit_current_tenant());
GRANT SELECT, INSERT, UPDATE ON follow_ups TO wasit_app;

-- The follow-ups due now, across tenants (at most p_limit): each is done, and its conversation
-- handed to the follow-up agent (`handoff_from` = 'follow_up_timer', the note as the reason) unless
-- a person has it. Returns the conversations to run a turn for. Runs as the owner to see every
-- tenant; each tenant's rows are changed as that tenant.
CREATE FUNCTION wasit_fire_follow_ups(p_limit integer)
    RETURNS TABLE (tenant_id uuid, contact_id uuid, conversation_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_due record;
    v_taken integer;
BEGIN
    FOR v_due IN
        SELECT f.tenant_id, f.id, f.conversation_id, f.note FROM follow_ups f
        WHERE f.status = 'pending' AND f.due_at <= now()
        ORDER BY f.due_at LIMIT p_limit
    LOOP
        PERFORM set_config('app.tenant_id', v_due.tenant_id::text, true);
        -- Another process may have fired it meanwhile: only the one whose update lands goes on.
        UPDATE follow_ups SET status = 'done', done_at = now()
        WHERE follow_ups.tenant_id = v_due.tenant_id AND follow_ups.id = v_due.id
          AND follow_ups.status = 'pending';
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        CONTINUE WHEN v_taken = 0;
        RETURN QUERY
            UPDATE conversations v SET active_agent = 'follow_up', handoff_from = 'follow_up_timer',
                handoff_reason = coalesce(v_due.note, 'a follow-up you scheduled is due'),
                handoff_hops = 0, updated_at = now()
            WHERE v.tenant_id = v_due.tenant_id AND v.id = v_due.conversation_id
              AND v.status = 'open' AND v.owner_user_id IS NULL
            RETURNING v.tenant_id, v.contact_id, v.id;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION wasit_fire_follow_ups(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_fire_follow_ups(integer) TO wasit_app;

DO $$
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE POLICY owner_routing ON follow_ups FOR SELECT TO %I USING (true)', current_user);
END
$$;
