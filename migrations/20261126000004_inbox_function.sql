-- Storing one inbound message in one round trip: contact by identities, identities added,
-- conversation upserted, message inserted (deduplicated). Runs as the caller (SECURITY INVOKER),
-- so row-level security applies and the tenant is the transaction's app.tenant_id.
--
-- When the identities belong to more than one contact, nothing is written and the function
-- answers 'merge' with their ids (oldest first): the caller merges them (runtime::inbox) and
-- calls again.
CREATE FUNCTION wasit_store_inbound(
    p_channel text, p_account uuid, p_kinds text[], p_values text[], p_display_name text,
    p_provider_message_id text, p_kind text, p_body text, p_payload jsonb,
    p_provider_timestamp timestamptz, p_triggers_turn boolean)
RETURNS TABLE (outcome text, contact_id uuid, conversation_id uuid, message_id uuid, seq bigint, merge_ids uuid[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_tenant uuid := wasit_current_tenant();
    v_contacts uuid[];
    v_contact uuid;
    v_conversation uuid;
    v_message uuid;
    v_seq bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'wasit_store_inbound needs app.tenant_id';
    END IF;
    -- Concurrent deliveries for the same person queue here, in a fixed lock order.
    PERFORM pg_advisory_xact_lock(hashtextextended(v_tenant::text || '/' || t.k || '/' || t.v, 0))
    FROM unnest(p_kinds, p_values) AS t(k, v) ORDER BY t.k, t.v;

    SELECT array_agg(c.id ORDER BY c.created_at, c.id) INTO v_contacts
    FROM contacts c
    WHERE c.tenant_id = v_tenant AND c.id IN (
        SELECT i.contact_id FROM contact_identities i
        WHERE i.tenant_id = v_tenant AND (i.kind, i.value) IN (SELECT * FROM unnest(p_kinds, p_values)));

    IF coalesce(array_length(v_contacts, 1), 0) > 1 THEN
        RETURN QUERY SELECT 'merge'::text, NULL::uuid, NULL::uuid, NULL::uuid, NULL::bigint, v_contacts;
        RETURN;
    END IF;
    IF v_contacts IS NULL THEN
        INSERT INTO contacts (tenant_id, display_name) VALUES (v_tenant, p_display_name) RETURNING id INTO v_contact;
    ELSE
        v_contact := v_contacts[1];
        IF p_display_name IS NOT NULL THEN
            UPDATE contacts SET display_name = p_display_name, updated_at = now()
            WHERE tenant_id = v_tenant AND id = v_contact AND display_name IS NULL;
        END IF;
    END IF;
    INSERT INTO contact_identities (tenant_id, contact_id, kind, value)
    SELECT v_tenant, v_contact, t.k, t.v FROM unnest(p_kinds, p_values) AS t(k, v)
    ON CONFLICT (tenant_id, kind, value) DO NOTHING;

    INSERT INTO conversations AS cv (tenant_id, contact_id, channel, channel_account_id, last_inbound_at)
    VALUES (v_tenant, v_contact, p_channel, p_account, now())
    ON CONFLICT (tenant_id, contact_id) DO UPDATE
        SET channel = EXCLUDED.channel,
            channel_account_id = coalesce(EXCLUDED.channel_account_id, cv.channel_account_id),
            last_inbound_at = now(), updated_at = now()
    RETURNING cv.id INTO v_conversation;

    INSERT INTO messages AS m (tenant_id, conversation_id, direction, channel, provider_message_id,
                               kind, body, payload, status, provider_timestamp, processed_at)
    VALUES (v_tenant, v_conversation, 'inbound', p_channel, p_provider_message_id, p_kind, p_body,
            p_payload, 'received', p_provider_timestamp, CASE WHEN p_triggers_turn THEN NULL ELSE now() END)
    ON CONFLICT (tenant_id, channel, provider_message_id) DO NOTHING
    RETURNING m.id, m.seq INTO v_message, v_seq;

    IF v_message IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_contact, v_conversation, NULL::uuid, NULL::bigint, NULL::uuid[];
    ELSE
        RETURN QUERY SELECT 'stored'::text, v_contact, v_conversation, v_message, v_seq, NULL::uuid[];
    END IF;
END
$$;
