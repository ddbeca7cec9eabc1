-- One inbound message in one statement, tenant included: what a webhook carrying a single message
-- (nearly all of them) needs before it may answer 200. The tenant comes from the receiving
-- address, exactly as runtime::inbox resolves it (wasit_tenant_id_by_channel), and is set
-- transaction-locally before anything is read or written, so row-level security applies as in
-- any tenant transaction. Runs as the caller (SECURITY INVOKER): it can do nothing wasit_app
-- cannot already do in a transaction of its own.
--
-- Outcomes: those of wasit_store_inbound ('stored', 'duplicate', 'merge' — nothing written, the
-- caller takes the transactional path), and 'unroutable' when no tenant owns the address
-- (nothing written; the caller records it).
CREATE FUNCTION wasit_receive_inbound(
    p_channel text, p_address text, p_kinds text[], p_values text[], p_display_name text,
    p_provider_message_id text, p_kind text, p_body text, p_payload jsonb,
    p_provider_timestamp timestamptz, p_triggers_turn boolean)
RETURNS TABLE (tenant_id uuid, outcome text, contact_id uuid, conversation_id uuid, message_id uuid,
               seq bigint, merge_ids uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tenant uuid := wasit_tenant_id_by_channel(p_channel, p_address);
    v_account uuid;
BEGIN
    IF v_tenant IS NULL THEN
        RETURN QUERY SELECT NULL::uuid, 'unroutable'::text, NULL::uuid, NULL::uuid, NULL::uuid,
                            NULL::bigint, NULL::uuid[];
        RETURN;
    END IF;
    PERFORM set_config('app.tenant_id', v_tenant::text, true);
    SELECT a.id INTO v_account FROM channel_accounts a
    WHERE a.tenant_id = v_tenant AND a.channel = p_channel AND a.address = p_address;
    RETURN QUERY
        SELECT v_tenant, s.outcome, s.contact_id, s.conversation_id, s.message_id, s.seq, s.merge_ids
        FROM wasit_store_inbound(p_channel, v_account, p_kinds, p_values, p_display_name,
                                 p_provider_message_id, p_kind, p_body, p_payload,
                                 p_provider_timestamp, p_triggers_turn) AS s;
END
$$;
REVOKE ALL ON FUNCTION wasit_receive_inbound(text, text, text[], text[], text, text, text, text,
                                             jsonb, timestamptz, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_receive_inbound(text, text, text[], text[], text, text, text, text,
                                                jsonb, timestamptz, boolean) TO wasit_app;
