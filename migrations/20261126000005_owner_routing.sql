-- The SECURITY DEFINER routing functions (wasit_tenant_id_by_slug, wasit_tenant_id_by_channel,
-- wasit_pending_conversations, wasit_due_outbox) run as the owner of the tables, and row-level
-- security is FORCED, so they see every tenant only if the owner bypasses RLS. A superuser or a
-- BYPASSRLS owner does (the embedded cluster, most self-hosted servers); a managed server's
-- ordinary owner role does not. For such an owner, these policies let the owner role — and only
-- it, never wasit_app — read the tables those functions read.
DO $$
DECLARE
    t text;
BEGIN
    IF (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['tenants', 'channel_accounts', 'conversations', 'messages', 'outbox'] LOOP
        EXECUTE format('CREATE POLICY owner_routing ON %I FOR SELECT TO %I USING (true)', t, current_user);
    END LOOP;
END
$$;
