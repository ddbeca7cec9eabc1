-- The conversation runtime's cross-tenant questions. The application role sees one tenant per
-- transaction; these SECURITY DEFINER functions answer the few questions the runtime must ask
-- across tenants (what is waiting, what is due), revealing only ids, never content.

-- Conversations with committed inbound messages that no turn has processed yet, the oldest of
-- them at least p_min_age old: redelivered to their conversation actors on start-up (crash
-- recovery, age 0) and periodically (messages whose delivery was lost, older than a margin).
CREATE FUNCTION wasit_pending_conversations(p_min_age interval)
    RETURNS TABLE (tenant_id uuid, contact_id uuid, conversation_id uuid, max_seq bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT c.tenant_id, c.contact_id, c.id, max(m.seq)
        FROM messages m JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id
        WHERE m.direction = 'inbound' AND m.processed_at IS NULL
        GROUP BY c.tenant_id, c.contact_id, c.id
        HAVING min(m.created_at) <= now() - p_min_age
    $$;
REVOKE ALL ON FUNCTION wasit_pending_conversations(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_pending_conversations(interval) TO wasit_app;

-- Outbox rows due for a send attempt, oldest first. A row waits while an earlier part of the same
-- conversation is still pending (keys are `conversation:turn:part`), so the parts of a long reply,
-- and consecutive replies, reach the contact in order.
CREATE FUNCTION wasit_due_outbox(p_limit integer) RETURNS TABLE (tenant_id uuid, id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT o.tenant_id, o.id FROM outbox o
        WHERE o.state = 'pending' AND o.next_attempt_at <= now()
          AND NOT EXISTS (
              SELECT 1 FROM outbox e
              WHERE e.tenant_id = o.tenant_id AND e.state = 'pending' AND e.id <> o.id
                AND split_part(e.idempotency_key, ':', 1) = split_part(o.idempotency_key, ':', 1)
                AND (split_part(e.idempotency_key, ':', 2)::bigint, split_part(e.idempotency_key, ':', 3)::bigint)
                  < (split_part(o.idempotency_key, ':', 2)::bigint, split_part(o.idempotency_key, ':', 3)::bigint))
        ORDER BY o.next_attempt_at
        LIMIT p_limit
    $$;
REVOKE ALL ON FUNCTION wasit_due_outbox(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wasit_due_outbox(integer) TO wasit_app;

-- The due index the function above scans, across tenants.
CREATE INDEX outbox_due_global ON outbox (next_attempt_at) WHERE state = 'pending';
